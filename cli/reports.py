"""Terminal tables of the evaluation and enrichment-A/B reports (the CLI and the demo)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_ab_report", "print_report"]


def _fmt_eval(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _fmt_ci(interval: Any) -> str:
    return "-" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def print_report(report: dict[str, Any], console: Console) -> None:
    """The report as terminal tables."""
    k = report["k"]
    cols = [
        "n",
        "n_judged",
        f"recall@{k}",
        f"ndcg@{k}",
        f"map@{k}",
        "mrr",
        f"hit_rate@{k}",
        "coverage",
        "ild",
        "novelty",
        "llm_involvement_rate",
        "hallucination_rate",
        "latency_ms_p50",
        "cost_usd_mean",
    ]
    short = {
        "llm_involvement_rate": "llm",
        "hallucination_rate": "halluc",
        "latency_ms_p50": "p50 ms",
        "cost_usd_mean": "$/req",
        "n_judged": "judged",
    }
    for name, system in report["systems"].items():
        rows = [("overall", system["overall"])]
        for key, groups in system.items():
            if key.startswith("by_"):
                rows += [(f"{key[3:]}={value}", m) for value, m in groups.items()]
        omitted = system.get("omitted", {})
        shown = [c for c in cols if c not in omitted and any(m.get(c) is not None for _, m in rows)]
        empty = [c for c in cols if c not in omitted and c not in shown]
        notes = [f"{system.get('relevance', 'relevance: ' + report['relevance_source'])}."]
        notes += [f"left out: {metric}, {why}." for metric, why in omitted.items()]
        if empty:
            notes.append(f"no value anywhere: {', '.join(empty)}.")
        table = Table(title=f"{name} (relevance: {report['relevance_source']})")
        table.add_column("slice")
        for c in shown:
            table.add_column(short.get(c, c), justify="right")
        for label, metrics in rows:
            table.add_row(label, *(_fmt_eval(metrics.get(c)) for c in shown))
        console.print(table)
        for note in notes:
            console.print(f"  {note}", highlight=False, soft_wrap=True)
    if report.get("expired_requests"):
        console.print(
            f"  {report['expired_requests']} requests were answered EXPIRED (shed: their "
            "deadline passed before serving began); no system is judged on them.",
            highlight=False,
            soft_wrap=True,
        )
    if report["llm"]:
        llm = Table(title="LLM log by use case")
        llm_cols = [
            "records",
            "called",
            "used",
            "cache_hits",
            "fallbacks",
            "hallucination_rate",
            "tokens_in",
            "tokens_out",
            "cost_usd",
        ]
        llm.add_column("use case")
        for c in llm_cols:
            llm.add_column(short.get(c, c), justify="right")
        for case, m in report["llm"].items():
            llm.add_row(case, *(_fmt_eval(m.get(c)) for c in llm_cols))
        console.print(llm)
    ope = report["off_policy"]
    table = Table(
        title=f"off-policy estimates (reward={ope['reward']}, clip={ope['clip']}, "
        f"logged mean={_fmt_eval(ope['logged_mean_reward'])}, n={ope['n_logged']})",
        caption=f"router = {ope['router']}" if ope.get("router") else None,
    )
    for c in ("target policy", "ips", "ips 95% CI", "snips", "snips 95% CI", "ess", "support"):
        table.add_column(c, justify="right" if c != "target policy" else "left")
    for name, e in ope["estimates"].items():
        table.add_row(
            name,
            _fmt_eval(e["ips"]),
            _fmt_ci(e.get("ips_ci")),
            _fmt_eval(e["snips"]),
            _fmt_ci(e.get("snips_ci")),
            _fmt_eval(e["ess"]),
            _fmt_eval(e["support"]),
        )
    console.print(table)


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
            table.add_row(
                kind, name, _fmt(stats["raw"]), _fmt(stats["enriched"]), delta, ci, str(stats["n"])
            )
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
        jt.add_row(
            kind, _fmt(stats["raw"], 2), _fmt(stats["enriched"], 2), delta, ci, str(stats["n"])
        )
    console.print(jt)
    if judge["failures"]:
        console.print(f"[yellow]judge failures:[/] {judge['failures']}", highlight=False)
