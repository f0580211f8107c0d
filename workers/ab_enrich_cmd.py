"""`streamrec ab-enrich`: raw vs LLM-enriched embeddings on a frozen MovieLens query set.

Thin: choose the LLM honestly (``--llm auto`` = the configured endpoint if any, else
none; ``simulated`` only when asked, and labelled), build the query set and run
:func:`recsys.evaluation.enrich_ab.run_enrichment_ab` under progress bars, then print
the tables and write JSON / HTML.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from recsys.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from recsys.evaluation.enrich_ab import AbLlm
    from recsys.evaluation.enrich_ab.run import Progress
    from streams.settings import Settings

__all__ = ["LLM_CHOICES", "AbCommandOptions", "ab_enrich", "print_ab_report", "run_ab_enrich"]

LLM_CHOICES = ("auto", "endpoint", "local", "simulated", "none")


@dataclass(frozen=True)
class AbCommandOptions:
    """Everything `ab-enrich` takes."""

    movielens: Path | None = None
    llm: str = "auto"
    judge: bool = True
    judge_model: str | None = None
    judge_queries: int = 40
    judge_top: int = 3
    k: int = 5
    seed: int = 7
    tag_queries: int = 200
    conversations: int = 100
    catalog: str = "tagged"
    max_items: int | None = None
    resamples: int = 2000
    json_out: Path | None = None
    html: Path | None = None
    queries_out: Path | None = None
    cache: bool = True
    cache_file: Path | None = None


def _check(opts: AbCommandOptions) -> None:
    if opts.llm not in LLM_CHOICES:
        raise ConfigurationError(f"--llm must be one of {', '.join(LLM_CHOICES)}, not {opts.llm!r}")
    if opts.catalog not in ("tagged", "all"):
        raise ConfigurationError(f"--catalog must be tagged or all, not {opts.catalog!r}")
    for name, value, least in (
        ("--k", opts.k, 1), ("--judge-top", opts.judge_top, 1),
        ("--judge-queries", opts.judge_queries, 0), ("--tag-queries", opts.tag_queries, 0),
        ("--conversations", opts.conversations, 0), ("--bootstrap", opts.resamples, 100),
    ):  # fmt: skip
        if value < least:
            raise ConfigurationError(f"{name} must be at least {least}, got {value}")
    if opts.tag_queries + opts.conversations == 0:
        raise ConfigurationError("--tag-queries and --conversations are both 0: no queries")


@contextlib.contextmanager
def ab_llm(settings: Settings, opts: AbCommandOptions) -> Iterator[AbLlm]:
    """The LLM of the run (clients for enrichment and the judge), honestly described."""
    from recsys.enrichment import Taxonomy
    from recsys.evaluation.enrich_ab import AbLlm
    from recsys.llm.client import LlmClient

    taxonomy = Taxonomy.from_setting(settings.tag_taxonomy)
    choice = opts.llm
    if choice == "auto":
        choice = "endpoint" if settings.llm_enabled else "none"
    if choice == "none":
        reason = (
            "LLM switched off (--llm none)"
            if opts.llm == "none"
            else "no LLM endpoint configured (set STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL)"
        )
        yield AbLlm(off_reason=reason, taxonomy=taxonomy)
        return
    judge_off = None if opts.judge else "judge switched off (--no-judge)"
    cache: dict[str, Any] = {}
    if opts.cache:
        from recsys.evaluation.enrich_ab.cache import JsonlEnrichmentCache

        path = opts.cache_file or settings.home / "ab-enrich" / "enrichment-cache.jsonl"
        cache = {"cache": JsonlEnrichmentCache(path), "cache_description": str(path)}
    if choice == "endpoint":
        if not settings.llm_enabled:
            raise ConfigurationError(
                "--llm endpoint needs STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL"
            )
        client = LlmClient.from_settings(settings)
        judge = (
            LlmClient.from_settings(settings, model=opts.judge_model or client.model)
            if opts.judge
            else None
        )
        yield AbLlm(
            client, judge, simulated=False, judge_off_reason=judge_off, taxonomy=taxonomy,
            **cache,
        )  # fmt: skip
        return
    if choice == "local":
        from stack.local_llm.wiring import embedded_llm, local_llm_overrides

        with embedded_llm(settings) as local:
            s = settings.with_overrides(**local_llm_overrides(settings, local))
            yield AbLlm(
                LlmClient.from_settings(s),
                None,
                simulated=False,
                judge_off_reason="no judge: a 135M local model cannot judge relevance",
                taxonomy=taxonomy,
                prompt_style=s.prompt_style,
                **cache,
            )
        return
    from recsys.llm.server import SimulatedLlmServer

    with SimulatedLlmServer() as server:
        model = opts.judge_model or server.model
        client = LlmClient(base_url=server.base_url, model=server.model, max_concurrency=8)
        judge = LlmClient(base_url=server.base_url, model=model) if opts.judge else None
        yield AbLlm(
            client, judge, simulated=True, judge_off_reason=judge_off, taxonomy=taxonomy,
            **cache,
        )  # fmt: skip


def _movielens_path(settings: Settings, opts: AbCommandOptions) -> Path:
    return (opts.movielens or settings.movielens_path).expanduser().resolve()


def run_ab_enrich(
    settings: Settings, opts: AbCommandOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Build the query set, run the A/B, write the outputs asked for; return the report."""
    from recsys.embedding import SentenceTransformerEmbedder
    from recsys.evaluation.enrich_ab import AbOptions, QuerySetConfig, load_query_set
    from recsys.evaluation.enrich_ab.html import render_ab_html
    from recsys.movielens import MovieLens

    _check(opts)
    path = _movielens_path(settings, opts)
    if not MovieLens.available(path):
        raise DataNotFound(
            f"no MovieLens data at {path} (movies.csv, ratings.csv, tags.csv of "
            "ml-latest-small): pass --movielens DIR or set STREAMREC_MOVIELENS_PATH"
        )
    movielens = MovieLens(path)
    qs = load_query_set(
        movielens,
        QuerySetConfig(
            seed=opts.seed, max_tag_queries=opts.tag_queries,
            max_conversations=opts.conversations,
            catalog="all" if opts.catalog == "all" else "tagged", max_items=opts.max_items,
        ),
    )  # fmt: skip
    if opts.queries_out is not None:
        opts.queries_out.parent.mkdir(parents=True, exist_ok=True)
        opts.queries_out.write_text(json.dumps(qs.to_json(), indent=2, ensure_ascii=False))
    embedder = SentenceTransformerEmbedder(
        settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
    )
    ab_opts = AbOptions(
        k=opts.k, judge_queries=opts.judge_queries, judge_top=opts.judge_top,
        resamples=opts.resamples, enrich_deadline_s=settings.enrich_deadline_s,
    )  # fmt: skip
    from recsys.evaluation.enrich_ab import run_enrichment_ab

    with ab_llm(settings, opts) as llm:
        try:
            report = run_enrichment_ab(qs, embedder, llm, ab_opts, progress)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    report["movielens"] = str(movielens.path)
    if opts.json_out is not None and str(opts.json_out) != "-":
        opts.json_out.parent.mkdir(parents=True, exist_ok=True)
        opts.json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if opts.html is not None:
        opts.html.parent.mkdir(parents=True, exist_ok=True)
        opts.html.write_text(render_ab_html(report), encoding="utf-8")
    return report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _delta(stats: dict[str, Any]) -> tuple[str, str]:
    delta, low, high = stats.get("delta"), stats.get("ci_low"), stats.get("ci_high")
    if delta is None:
        return "-", "-"
    ci = "-" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"
    return f"{delta:+.3f}", ci


def print_ab_report(report: dict[str, Any], console: Console) -> None:
    """The report as terminal tables."""
    qs = report["query_set"]
    enrichment = report["enrichment"]
    console.print(
        f"query set {qs['version']} seed {qs['seed']} fingerprint {qs['fingerprint']}: "
        f"{qs['queries']['tag']} tag queries, {qs['queries']['conversation']} conversations, "
        f"catalog {qs['catalog_items']} items ({qs['catalog']}); embeddings "
        f"{report['embedding_model']}",
        highlight=False,
    )
    if enrichment["status"] == "off":
        console.print(f"[yellow]enrichment off:[/] {enrichment['reason']}", highlight=False)
    else:
        label = "[bold magenta]SIMULATED LLM[/] " if enrichment["simulated"] else ""
        console.print(
            f"enrichment: {label}{enrichment['model']} prompt {enrichment['prompt_version']}: "
            f"{enrichment['enriched']}/{enrichment['items']} items enriched, "
            f"{enrichment['fell_back_to_raw']} fell back to raw text, "
            f"{enrichment['cache_hits']} from the cache ({enrichment['cache']})"
            + (f" ({enrichment['failures']})" if enrichment["failures"] else ""),
            highlight=False,
        )
    boot = report["bootstrap"]
    table = Table(
        title="retrieval: raw vs enriched embeddings",
        caption=f"delta = enriched - raw; {int(boot['confidence'] * 100)}% CI: {boot['method']}, "
        f"{boot['resamples']} resamples",
    )
    for col in ("queries", "metric", "raw", "enriched", "delta", "CI", "n"):
        table.add_column(col, justify="left" if col in ("queries", "metric") else "right")
    for kind, metrics in report["retrieval"].items():
        for name, stats in metrics.items():
            delta, ci = _delta(stats)
            table.add_row(kind, name, _fmt(stats["raw"]), _fmt(stats["enriched"]), delta, ci,
                          str(stats["n"]))  # fmt: skip
    console.print(table)
    judge = report["judge"]
    if judge["status"] != "ran":
        console.print(
            f"[yellow]judge {judge['reason']}[/] (prompt {judge['prompt_name']} "
            f"{judge['prompt_version']})",
            highlight=False,
        )
        return
    label = "SIMULATED " if judge["simulated"] else ""
    jt = Table(
        title=f"justification quality, 1-5 ({label}judge {judge['model']})",
        caption=f"answered by {', '.join(judge['answered_by']) or '-'}; prompt "
        f"{judge['prompt_name']} {judge['prompt_version']}; top {judge['items_per_query']} "
        f"items per arm on {judge['queries']} queries; temperature {judge['temperature']}",
    )
    for col in ("queries", "raw", "enriched", "delta", "CI", "n"):
        jt.add_column(col, justify="left" if col == "queries" else "right")
    for kind, stats in judge["scores"].items():
        delta, ci = _delta(stats)
        jt.add_row(kind, _fmt(stats["raw"], 2), _fmt(stats["enriched"], 2), delta, ci,
                   str(stats["n"]))  # fmt: skip
    console.print(jt)
    if judge["failures"]:
        console.print(f"[yellow]judge failures:[/] {judge['failures']}", highlight=False)


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
    )

    from workers.cli import _settings, console, err_console

    settings = _settings()
    opts = AbCommandOptions(
        movielens=movielens, llm=llm, judge=judge, judge_model=judge_model,
        judge_queries=judge_queries, judge_top=judge_top, k=k, seed=seed,
        tag_queries=tag_queries, conversations=conversations, catalog=catalog,
        max_items=max_items, resamples=bootstrap, json_out=json_out, html=html,
        queries_out=queries_out, cache=cache, cache_file=cache_file,
    )  # fmt: skip
    with Progress(
        TextColumn("[bold]ab-enrich[/] {task.description:8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, advance: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.advance(tasks[stage], advance)

        report = run_ab_enrich(settings, opts, progress)
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print_ab_report(report, console)
    for what, path in (("JSON", json_out), ("HTML report", html), ("query set", queries_out)):
        if path is not None:
            console.print(f"{what}: {path}")
