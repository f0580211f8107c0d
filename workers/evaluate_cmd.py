"""`streamrec evaluate`: metrics over archived data, sliced by warmth bucket, route and
llm_used; off-policy estimates of other routing policies; terminal tables, JSON and a
self-contained HTML report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["EvaluateOptions", "evaluate", "print_report", "run_evaluate"]

DEFAULT_TARGETS = ("logged", "router-no-llm", "router-llm-eligible")


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate and where the results go."""

    archive: Path | None = None
    policies: tuple[str, ...] = ()
    k: int = 10
    targets: tuple[str, ...] = DEFAULT_TARGETS
    clip: float | None = None
    reward: str = "any"
    categories: Path | None = None
    json_out: Path | None = None
    html: Path | None = None
    ab: Path | None = None


def _json_default(value: Any) -> Any:
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf → None, so the JSON is valid everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def run_evaluate(settings: Settings, opts: EvaluateOptions) -> dict[str, Any]:
    """Load the archive, evaluate, write JSON/HTML when asked; return the report."""
    from recsys.evaluation import ArchiveTopics, EvaluationData, evaluate, load_categories
    from recsys.evaluation.html import render_html
    from recsys.exceptions import ConfigurationError
    from streams.topics import Topics

    if opts.k < 1:
        raise ConfigurationError(f"--k must be at least 1, got {opts.k}")
    if opts.reward not in ("any", "click", "purchase"):
        raise ConfigurationError(f"--reward must be any, click or purchase, not {opts.reward!r}")
    if opts.clip is not None and opts.clip <= 0:
        raise ConfigurationError("--clip must be positive")
    topics = Topics(settings)
    root = opts.archive or settings.archive_root
    data = EvaluationData.from_archive(
        root,
        ArchiveTopics(
            responses=topics.rec_responses.name,
            feedback_examples=topics.feedback_examples.name,
            llm_log=topics.llm_log.name,
            requests=topics.rec_requests.name,
            user_events=topics.user_events.name,
        ),
        policies=opts.policies,
    )
    if opts.categories is not None:
        data.categories = load_categories(opts.categories)
    try:
        report = evaluate(
            data,
            k=opts.k,
            window_s=float(settings.attribution_window_s),
            targets=opts.targets,
            clip=opts.clip,
            reward=opts.reward,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    report = _clean(report)
    report["archive"] = str(root)
    if opts.ab is not None:
        report["enrichment_ab"] = _load_ab(opts.ab)
    if opts.json_out is not None and str(opts.json_out) != "-":
        opts.json_out.parent.mkdir(parents=True, exist_ok=True)
        opts.json_out.write_text(json.dumps(report, indent=2, default=_json_default))
    if opts.html is not None:
        opts.html.parent.mkdir(parents=True, exist_ok=True)
        opts.html.write_text(render_html(report), encoding="utf-8")
    return report


def _load_ab(path: Path) -> dict[str, Any]:
    """An `ab-enrich --json` report, to show beside the evaluation."""
    from recsys.exceptions import ConfigurationError, DataNotFound

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFound(
            f"--ab: no file {path}; write one with `streamrec ab-enrich --json`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"--ab: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not {"retrieval", "judge", "query_set"} <= data.keys():
        raise ConfigurationError(f"--ab: {path} is not an `ab-enrich --json` report")
    return data


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def print_report(report: dict[str, Any], console: Console) -> None:
    """The report as terminal tables."""
    k = report["k"]
    cols = ["n", "n_judged", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "mrr", f"hit_rate@{k}",
            "coverage", "ild", "novelty", "llm_involvement_rate", "hallucination_rate",
            "latency_ms_p50", "cost_usd_mean"]  # fmt: skip
    short = {"llm_involvement_rate": "llm", "hallucination_rate": "halluc",
             "latency_ms_p50": "p50 ms", "cost_usd_mean": "$/req", "n_judged": "judged"}  # fmt: skip
    for name, system in report["systems"].items():
        table = Table(title=f"{name} (relevance: {report['relevance_source']})")
        table.add_column("slice")
        for c in cols:
            table.add_column(short.get(c, c), justify="right")
        rows = [("overall", system["overall"])]
        for key, groups in system.items():
            if key.startswith("by_"):
                rows += [(f"{key[3:]}={value}", m) for value, m in groups.items()]
        for label, metrics in rows:
            table.add_row(label, *(_fmt(metrics.get(c)) for c in cols))
        console.print(table)
    if report["llm"]:
        llm = Table(title="LLM log by use case")
        llm_cols = ["records", "called", "used", "cache_hits", "fallbacks",
                    "hallucination_rate", "tokens_in", "tokens_out", "cost_usd"]  # fmt: skip
        llm.add_column("use case")
        for c in llm_cols:
            llm.add_column(short.get(c, c), justify="right")
        for case, m in report["llm"].items():
            llm.add_row(case, *(_fmt(m.get(c)) for c in llm_cols))
        console.print(llm)
    ope = report["off_policy"]
    table = Table(
        title=f"off-policy estimates (reward={ope['reward']}, clip={ope['clip']}, "
        f"logged mean={_fmt(ope['logged_mean_reward'])}, n={ope['n_logged']})"
    )
    for c in ("target policy", "ips", "snips", "ess", "support"):
        table.add_column(c, justify="right" if c != "target policy" else "left")
    for name, e in ope["estimates"].items():
        table.add_row(name, _fmt(e["ips"]), _fmt(e["snips"]), _fmt(e["ess"]), _fmt(e["support"]))
    console.print(table)


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
        typer.Option("--target", help="Routing policy for IPS/SNIPS (repeat)."),
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
) -> None:
    """Metrics over archived responses and outcomes, sliced by warmth bucket, route and
    llm_used, with IPS/SNIPS of other routing policies."""
    from workers.cli import _settings, console, err_console

    settings = _settings()
    opts = EvaluateOptions(
        archive=archive, policies=tuple(policy or ()), k=k,
        targets=tuple(target or DEFAULT_TARGETS), clip=clip, reward=reward,
        categories=categories, json_out=json_out, html=html, ab=ab,
    )  # fmt: skip
    with err_console.status("reading the archive and evaluating"):
        report = run_evaluate(settings, opts)
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(report, indent=2, default=_json_default))
        return
    print_report(report, console)
    if "enrichment_ab" in report:
        from workers.ab_enrich_cmd import print_ab_report

        print_ab_report(report["enrichment_ab"], console)
    for what, path in (("JSON", json_out), ("HTML report", html)):
        if path is not None:
            console.print(f"{what}: {path}")
