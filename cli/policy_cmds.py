"""`streamrec learn-policy` (and `streamrec policy list`): a thin layer over
:mod:`jobs.learn_policy` and the policy store — options, progress bars, terminal tables."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.common import RichSteps, console, err_console, load, progress_bar

__all__ = ["learn_policy", "print_policy_report"]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:.3f}, {value[1]:.3f}]"


def print_policy_report(report: dict[str, Any], out: Console) -> None:
    """The report as terminal tables: policies, rules, unsupported candidates, decision."""
    est = report["config"]["estimator"]
    level = round(report["config"]["confidence"] * 100)
    out.print(
        f"{report['examples']} examples → {report['n_requests']} logged requests "
        f"({report['n_selection']} to choose, {report['n_holdout']} held out); reward "
        f"{report['reward']}, logged mean {_fmt(report['logged_mean_reward'])}; current "
        f"policy {report['current']['version']} ({report['current_source']})",
        highlight=False,
    )
    table = Table(title=f"policies on the holdout ({level}% bootstrap intervals)")
    for col in ("policy", "n", "matched", "ESS", "IPS", "SNIPS", "interval", "DR", "interval"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name, parts in report["estimates"].items():
        e = parts["overall"]
        style = "bold" if name == "learned" else None
        table.add_row(
            name,
            str(e["n"]),
            str(e["matched"]),
            f"{e['ess']:.0f}",
            _fmt(e["ips"]),
            _fmt(e["snips"]),
            _ci(e["ci"]["snips"]),
            _fmt(e["dr"]),
            _ci(e["ci"]["dr"]),
            style=style,
        )
    out.print(table)
    buckets = Table(title=f"by warmth bucket ({est.upper()}, holdout)")
    buckets.add_column("policy")
    for b in ("COLD", "WARMING", "WARM"):
        buckets.add_column(b, justify="right")
    for name, parts in report["estimates"].items():
        buckets.add_row(
            name,
            *(
                f"{_fmt(parts[b][est])} {_ci(parts[b]['ci'][est])}"
                for b in ("COLD", "WARMING", "WARM")
            ),
        )
    out.print(buckets)
    rules = Table(title="rules per cell (ε: current → learned)")
    for col in ("cell", "current", "learned"):
        rules.add_column(col)
    for cell, spec in report["current"]["cells"].items():
        learned = report["learned"]["cells"][cell]
        changed = cell in report["changed_cells"]
        rules.add_row(cell, _label(spec), _label(learned), style="bold" if changed else None)
    out.print(rules)
    out.print(f"ε {report['current']['epsilon']} → {report['learned']['epsilon']}", highlight=False)
    if report["unsupported"]:
        out.print(f"[yellow]cannot be estimated ({len(report['unsupported'])}):[/]")
        for line in report["unsupported"]:
            out.print(f"  {line}", highlight=False)
    colour = "green" if report["activated"] else "yellow"
    out.print(f"[{colour}]{report['reason']}[/]", highlight=False)
    if report["activated"]:
        out.print(f"activated policy version [bold]{report['activated']}[/]")


def _label(rule: dict[str, Any]) -> str:
    route = rule["route"]
    if route == "HYBRID":
        route += f"(c{rule['content_weight']:g},p{rule['popularity_weight']:g})"
    return route + ("+rerank" if rule["rerank"] else "")


def learn_policy(
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
    reward: Annotated[str, typer.Option(help="Reward: any, click or purchase.")] = "any",
    estimator: Annotated[
        str, typer.Option(help="Estimator that chooses and decides: snips or dr.")
    ] = "snips",
    holdout: Annotated[
        float, typer.Option(help="Share of requests held out to judge the learned policy.")
    ] = 0.5,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the intervals.")] = 500,
    confidence: Annotated[float, typer.Option(help="Confidence of the intervals.")] = 0.95,
    min_matches: Annotated[
        int, typer.Option(help="A candidate needs at least this many logged matches.")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the split and the bootstrap.")] = 0,
    space: Annotated[
        Path | None,
        typer.Option(help="Candidate space as JSON (routes, rerank, fusions, cells)."),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(help="Exploration rate of the learned policy (default: the settings')."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report only: store and activate nothing.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON here (`-`: stdout).")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")] = None,
    broker: Annotated[
        str | None, typer.Option("--broker", help="External Kafka bootstrap servers.")
    ] = None,
    database: Annotated[
        str | None, typer.Option("--database", help="External Postgres DSN.")
    ] = None,
) -> None:
    """Learn the routing policy (route, fusion weights, LLM rerank per warmth bucket and
    query) from feedback.examples with SNIPS and doubly robust estimates; activate it only
    if its lower confidence bound beats the current policy."""
    from jobs.database import open_database
    from jobs.learn_policy import LearnPolicyOptions, run_learn_policy
    from jobs.ranges import parse_time

    settings = load(bootstrap_servers=broker)
    opts = LearnPolicyOptions(
        source=source,
        archive=archive,
        partitions=tuple(partition or ()),
        from_offset=from_offset,
        to_offset=to_offset,
        since_ms=parse_time(since, "--since"),
        until_ms=parse_time(until, "--until"),
        reward=reward,
        estimator=estimator,
        holdout=holdout,
        resamples=bootstrap,
        confidence=confidence,
        min_matches=min_matches,
        seed=seed,
        space=space,
        epsilon=epsilon,
        dry_run=dry_run,
        json_out=json_out,
        html=html,
    )
    dsn, release = open_database(settings, database)
    try:
        with progress_bar("learn-policy") as bar:
            report = asyncio.run(run_learn_policy(settings, opts, dsn, RichSteps(bar)))
    finally:
        release()
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    print_policy_report(report, console)
    for what, path in (("JSON", json_out), ("HTML report", html)):
        if path is not None:
            err_console.print(f"{what}: {path}")
