"""Commands for data scientists: train-cf, replay, evaluate, ab-enrich.

Each is a thin Typer command over a job in :mod:`jobs`: parse options, draw progress,
print the result.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import RichSteps, TopicPrefixOpt, console, err_console, load, progress_bar
from cli.reports import print_ab_report, print_report
from recsys.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from jobs.ab_enrich import LlmEndpoint, SimulatedServerFactory

__all__ = ["ab_enrich", "evaluate", "replay", "simulated_llm_factory", "train_cf"]


def simulated_llm_factory() -> SimulatedServerFactory:
    """testkit's simulated LLM server, or a clear error where testkit is not installed."""
    try:
        from testkit.llm_server import SimulatedLlmServer
    except ImportError as exc:
        raise ConfigurationError(
            "the simulated LLM is a test double shipped in a checkout's dev install "
            f"(package testkit: {exc}); use --llm none, or an endpoint"
        ) from exc

    def start() -> AbstractContextManager[LlmEndpoint]:
        return SimulatedLlmServer()

    return start


def train_cf(
    factors: Annotated[
        int | None, typer.Option(help="Latent factors: 16, 32, 64, 128 or 256 (default: setting).")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="ALS iterations.")] = None,
    regularization: Annotated[float | None, typer.Option(help="L2 regularisation λ.")] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Confidence scale alpha (1 + alpha·w).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same data + seed = same model).")] = 42,
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this time (ISO-8601 or epoch ms).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only events before this time (ISO-8601 or epoch ms).")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="Train on archived user.events under this archive root instead."),
    ] = None,
    no_activate: Annotated[
        bool, typer.Option("--no-activate", help="Write the version but keep serving the old one.")
    ] = False,
    feedback: Annotated[
        bool,
        typer.Option(
            "--feedback",
            help="Also learn from feedback.examples: impressions not acted on as weak "
            "negatives, inverse-propensity and LLM weights (docs/collaborative-filtering.md).",
        ),
    ] = False,
    feedback_source: Annotated[
        str, typer.Option(help="Read feedback.examples from `archive` or `kafka`.")
    ] = "archive",
    feedback_archive: Annotated[
        Path | None,
        typer.Option(help="Archive root of feedback.examples (default: --archive, else setting)."),
    ] = None,
    negative_weight: Annotated[
        float | None,
        typer.Option(help="Weight of a shown item not acted on (default: setting)."),
    ] = None,
    ips_clip: Annotated[
        float | None,
        typer.Option(help="Cap of inverse-propensity weights, 0 = off (default: setting)."),
    ] = None,
    llm_weight: Annotated[
        float | None,
        typer.Option(help="Weight of LLM-touched impressions' outcomes (default: setting)."),
    ] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="External Postgres DSN.")
    ] = None,
) -> None:
    """Train implicit-feedback ALS on the stored user events, write the item factors to
    pgvector as a new model version and activate it."""
    from jobs.database import open_database
    from jobs.replay import parse_time
    from jobs.train_cf import TrainCfOptions, run_train_cf

    settings = load()

    def when(text: str | None, option: str) -> datetime | None:
        ms = parse_time(text, option)
        return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None

    opts = TrainCfOptions(
        factors=factors,
        iterations=iterations,
        regularization=regularization,
        alpha=alpha,
        seed=seed,
        since=when(since, "--since"),
        until=when(until, "--until"),
        archive=archive,
        activate=not no_activate,
        feedback=feedback,
        feedback_source=feedback_source,
        feedback_archive=feedback_archive,
        negative_weight=negative_weight,
        ips_clip=ips_clip,
        llm_weight=llm_weight,
    )
    if feedback_source not in ("archive", "kafka"):
        raise ConfigurationError(
            f"--feedback-source must be archive or kafka, not {feedback_source!r}"
        )
    if archive is not None and not archive.is_dir():
        raise DataNotFound(f"--archive {archive}: no such folder")
    dsn, release = open_database(settings, database)
    try:
        with progress_bar("train-cf") as bar:
            result = asyncio.run(run_train_cf(settings, opts, dsn, RichSteps(bar)))
    finally:
        release()
    state = "active" if result.active else "inactive (--no-activate)"
    loss = f"{result.loss:.5f}" if result.loss is not None else "-"
    console.print(
        f"ALS version [bold]{result.version}[/] ({state}): {result.n_events} events from "
        f"{result.source}, {result.n_users} users x {result.n_items} items, "
        f"{result.n_interactions} interactions; training loss {loss}",
        highlight=False,
    )
    if result.feedback is not None:
        fb = result.feedback
        console.print(
            f"feedback: {fb['examples']} examples ({fb['acted_on']} acted on, "
            f"{fb['llm_touched']} LLM-touched), {fb['negative_cells']} weak-negative cells; "
            f"weights {fb['weights']}",
            highlight=False,
        )
        if fb["weights"] == {"negative": 0.0, "ips_clip": 0.0, "llm_weight": 1.0}:
            console.print(
                "the feedback weights are neutral (the measured defaults, "
                "docs/collaborative-filtering.md): the matrix is the events' alone; set "
                "--negative-weight, --ips-clip or --llm-weight to use the examples",
                highlight=False,
            )
    seconds = ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items())
    pruned = f"; pruned {', '.join(result.pruned)}" if result.pruned else ""
    console.print(
        f"seconds: {seconds}{pruned}; popularity: {result.popularity_items} items",
        highlight=False,
    )


def replay(
    topic: Annotated[
        str, typer.Argument(help="Topic to read, e.g. rec.responses or rec.requests.")
    ],
    source: Annotated[str, typer.Option(help="Read from `kafka` or `archive`.")] = "kafka",
    archive: Annotated[
        Path | None, typer.Option(help="Archive root (default: the archive_root setting).")
    ] = None,
    partition: Annotated[
        list[int] | None, typer.Option("--partition", "-p", help="Only this partition (repeat).")
    ] = None,
    from_offset: Annotated[int | None, typer.Option(help="First offset (inclusive).")] = None,
    to_offset: Annotated[int | None, typer.Option(help="Stop before this offset.")] = None,
    since: Annotated[
        str | None, typer.Option(help="First Kafka timestamp (inclusive): ISO-8601 or epoch ms.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop before this timestamp.")] = None,
    export: Annotated[
        Path | None, typer.Option(help="Export the range to this .avro/.parquet/.csv file.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="avro, parquet or csv (default: by suffix).")
    ] = None,
    publish: Annotated[
        str | None, typer.Option(help="Publish the range byte for byte to this topic.")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Re-run the logged requests (rec.requests) with this configuration."),
    ] = None,
    engine: Annotated[str, typer.Option(help="Policy engine that builds the configuration.")] = (
        "popularity"
    ),
    out_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where counterfactual responses go (default <archive>/counterfactual/<policy>)."
        ),
    ] = None,
    out_topic: Annotated[
        str | None, typer.Option(help="Also publish counterfactual responses to this topic.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier counterfactual responses of this policy.")
    ] = False,
    broker: Annotated[
        str | None, typer.Option("--broker", help="External Kafka bootstrap servers.")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Postgres DSN the serving engine reads (items, CF)."),
    ] = None,
    topic_prefix: TopicPrefixOpt = None,
) -> None:
    """Read a range of a topic (Kafka or archive); export it, publish it to another topic,
    or re-run the logged requests through another policy configuration."""
    from jobs.replay import ReplayOptions, parse_time, run_replay

    settings = load(bootstrap_servers=broker, database_url=database, topic_prefix=topic_prefix)
    opts = ReplayOptions(
        topic=topic,
        source=source,
        archive=archive,
        partitions=tuple(partition or ()),
        from_offset=from_offset,
        to_offset=to_offset,
        since_ms=parse_time(since, "--since"),
        until_ms=parse_time(until, "--until"),
        export=export,
        fmt=fmt,
        publish=publish,
        policy=policy,
        engine=engine,
        out_dir=out_dir,
        out_topic=out_topic,
        overwrite=overwrite,
    )
    with progress_bar("replay") as bar:
        task = bar.add_task(topic, total=None)
        summary = run_replay(settings, opts, lambda n: bar.advance(task, n))
    if policy:
        console.print(
            f"policy {policy}: {summary.written} counterfactual response(s) for "
            f"{len(set(summary.request_ids))} logged request(s), llm_used in "
            f"{summary.llm_used} → {summary.target}"
        )
        return
    skipped = f"; {summary.undecodable} undecodable skipped" if summary.undecodable else ""
    console.print(
        f"replayed {summary.written} message(s) of {summary.topic} ({source}) → "
        f"{summary.target}{skipped}"
    )


def evaluate(
    archive: Annotated[
        Path | None, typer.Option(help="Archive root (default: the archive_root setting).")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Also evaluate this counterfactual replay (repeat)."),
    ] = None,
    k: Annotated[int, typer.Option(help="Cut-off of the ranking metrics.")] = 10,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Target policy for IPS/SNIPS (repeat): router, router-no-llm, "
            "router-llm-eligible, cf-only, content-only, hybrid-only, popularity-only, "
            "logged, policy:<version>.",
        ),
    ] = None,
    clip: Annotated[float | None, typer.Option(help="Cap importance weights at this.")] = None,
    reward: Annotated[str, typer.Option(help="Reward: any, click or purchase.")] = "any",
    categories: Annotated[
        Path | None,
        typer.Option(help="Item categories for diversity: a MovieLens folder, .csv or .json."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here (`-`: stdout).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    ab: Annotated[
        Path | None,
        typer.Option(help="Include an `ab-enrich --json` report (enrichment A/B) in the output."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", help="Postgres with the policy versions (`router` = the active one)."
        ),
    ] = None,
    topic_prefix: TopicPrefixOpt = None,
) -> None:
    """Metrics over archived responses and outcomes, sliced by warmth bucket, route and
    llm_used, with IPS/SNIPS of other routing policies (`router`: the policy that ships,
    and its variants; `policy:<version>`: a stored version)."""
    from jobs.evaluate import DEFAULT_TARGETS, EvaluateOptions, json_default, run_evaluate

    settings = load(topic_prefix=topic_prefix)
    opts = EvaluateOptions(
        archive=archive,
        policies=tuple(policy or ()),
        k=k,
        targets=tuple(target or DEFAULT_TARGETS),
        clip=clip,
        reward=reward,
        categories=categories,
        json_out=json_out,
        html=html,
        ab=ab,
        database=database,
    )
    with err_console.status("reading the archive and evaluating"):
        report = run_evaluate(settings, opts)
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(report, indent=2, default=json_default))
        return
    print_report(report, console)
    if "enrichment_ab" in report:
        print_ab_report(report["enrichment_ab"], console)
    for what, path in (("JSON", json_out), ("HTML report", html)):
        if path is not None:
            console.print(f"{what}: {path}")


def ab_enrich(
    movielens: Annotated[
        Path | None, typer.Option(help="MovieLens folder (default: STREAMREC_MOVIELENS_PATH).")
    ] = None,
    llm: Annotated[
        str,
        typer.Option(
            help="auto (the configured endpoint, else none) | endpoint | local (the embedded "
            "135M model, compact prompts, no judge) | simulated | none."
        ),
    ] = "auto",
    judge: Annotated[bool, typer.Option(help="Run the LLM judge when there is an LLM.")] = True,
    judge_model: Annotated[
        str | None,
        typer.Option(help="Pinned judge model (default: STREAMREC_LLM_MODEL); pin a snapshot."),
    ] = None,
    judge_queries: Annotated[int, typer.Option(help="Queries the judge sees.")] = 40,
    judge_top: Annotated[int, typer.Option(help="Top items judged per query and arm.")] = 3,
    k: Annotated[int, typer.Option(help="Cut-off of recall and nDCG.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the query set (phrasing, sampling).")] = 7,
    tag_queries: Annotated[int, typer.Option(help="At most this many tag queries.")] = 200,
    conversations: Annotated[int, typer.Option(help="At most this many conversations.")] = 100,
    catalog: Annotated[
        str, typer.Option(help="tagged (movies with a user tag) or all movies.")
    ] = "tagged",
    max_items: Annotated[
        int | None, typer.Option(help="Cut the catalog (needed items + seeded distractors).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the CIs.")] = 2000,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here (`-`: stdout).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    queries_out: Annotated[
        Path | None, typer.Option(help="Write the frozen query set as JSON here.")
    ] = None,
    cache: Annotated[
        bool, typer.Option(help="Keep validated enrichments between runs (no LLM call twice).")
    ] = True,
    cache_file: Annotated[
        Path | None,
        typer.Option(
            help="The cache file (default <STREAMREC_HOME>/ab-enrich/enrichment-cache.jsonl)."
        ),
    ] = None,
) -> None:
    """Raw-text vs LLM-enriched embeddings on a frozen MovieLens query set: recall@k,
    nDCG@k, MRR with bootstrap CIs per query kind, and an LLM judge of justifications."""
    from jobs.ab_enrich import AbCommandOptions, run_ab_enrich

    settings = load()
    opts = AbCommandOptions(
        movielens=movielens,
        llm=llm,
        judge=judge,
        judge_model=judge_model,
        judge_queries=judge_queries,
        judge_top=judge_top,
        k=k,
        seed=seed,
        tag_queries=tag_queries,
        conversations=conversations,
        catalog=catalog,
        max_items=max_items,
        resamples=bootstrap,
        json_out=json_out,
        html=html,
        queries_out=queries_out,
        cache=cache,
        cache_file=cache_file,
    )
    with progress_bar("ab-enrich") as bar:
        steps = RichSteps(bar)

        def progress(stage: str, advance: int, total: int) -> None:
            if stage not in steps.tasks:
                steps.start(stage, total)
            steps.advance(stage, advance)

        simulated = simulated_llm_factory() if llm == "simulated" else None
        report = run_ab_enrich(settings, opts, progress, simulated)
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print_ab_report(report, console)
    for what, path in (("JSON", json_out), ("HTML report", html), ("query set", queries_out)):
        if path is not None:
            console.print(f"{what}: {path}")
