"""A self-contained HTML report of an evaluation: tables plus matplotlib figures
embedded as base64 PNG (one file, no external assets), rendered with jinja2.

It fits a 1280-pixel window: the page is at most 1200 px wide, each system's metrics
are split into two narrow tables (ranking; coverage, LLM and cost), columns with no
value anywhere and metrics that are constant by construction are left out with the
reason, and wide content scrolls inside its own box, never the page. Every plotted
metric carries its 95% bootstrap interval as an error bar.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from recsys.evaluation.intervals import CONFIDENCE, RESAMPLES

__all__ = ["columns_for", "render_html"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamrec evaluation</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; padding: 0 1rem;
       max-width: 1200px; color: #222; }
.wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1.25rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: right; }
td { white-space: nowrap; }
th { background: #f3f3f3; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; overflow-wrap: anywhere; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr));
           gap: 0.5rem 1.5rem; }
figure { margin: 0; }
figcaption { color: #555; font-size: 0.8rem; }
</style></head><body>
<h1>streamrec evaluation</h1>
<p class="note">k = {{ r.k }} · relevance from {{ r.relevance_source }} · catalog size
{{ r.catalog_size }} ({{ r.catalog_source }}) · diversity from
{{ r.diversity_source or "n/a (no categories or vectors)" }} · intervals:
{{ (confidence * 100)|int }}% percentile bootstrap over requests, {{ resamples }} resamples.</p>
{% if r.expired_requests %}<p class="note">{{ r.expired_requests }} requests were answered EXPIRED
(shed: their deadline passed before serving began); no system is judged on them.</p>{% endif %}
{% for name, system in r.systems.items() %}
<section class="system">
<h2>{{ name }}</h2>
<p class="note">{{ system.relevance }}.</p>
{% for metric, why in system.omitted.items() %}<p class="note">Left out: {{ metric }} — {{ why }}.</p>
{% endfor %}
{% for group in tables[name] %}
<h3>{{ group.title }}</h3>
{% if group.empty %}<p class="note">No value: {{ group.empty|join(", ") }} ({{ group.why }}).</p>{% endif %}
<div class="wrap"><table><tr><th>slice</th>{% for c in group.columns %}<th>{{ labels.get(c, c) }}</th>{% endfor %}</tr>
{% for label, m in group.rows %}<tr><td>{{ label }}</td>{% for c in group.columns %}<td>{{ fmt(m.get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>
{% endfor %}
</section>
{% endfor %}
<h2>Figures</h2>
<div class="figures">
{% for title, png in figures %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}; error bars: {{ (confidence * 100)|int }}% bootstrap interval.</figcaption></figure>
{% endfor %}</div>
<h2>LLM log</h2>
<div class="wrap"><table><tr><th>use case</th>{% for c in llm_columns %}<th>{{ labels.get(c, c) }}</th>{% endfor %}</tr>
{% for case, m in r.llm.items() %}<tr><td>{{ case }}</td>{% for c in llm_columns %}<td>{{ fmt(m.get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table></div>
<h2>Off-policy estimates</h2>
<p class="note">Reward: {{ r.off_policy.reward }} · clip: {{ r.off_policy.clip }} · logged requests with
feedback: {{ r.off_policy.n_logged }} · logged mean reward: {{ fmt(r.off_policy.logged_mean_reward) }}{% if r.off_policy.get("router") %} · router = {{ r.off_policy.router }}{% endif %}.
IPS/SNIPS assume the logged propensities are the logging policy's true action probabilities,
that every action the target takes had a non-zero logging probability (ESS and support show
how much of the log agrees), and that rewards depend only on each request's context and action.</p>
<div class="wrap"><table><tr><th>target policy</th><th>ips</th><th>ips 95% CI</th><th>snips</th><th>snips 95% CI</th><th>ess</th><th>support</th><th>n</th></tr>
{% for name, e in r.off_policy.estimates.items() %}<tr><td>{{ name }}</td><td>{{ fmt(e.ips) }}</td><td>{{ ci(e.get("ips_ci")) }}</td><td>{{ fmt(e.snips) }}</td><td>{{ ci(e.get("snips_ci")) }}</td><td>{{ fmt(e.ess) }}</td><td>{{ fmt(e.support) }}</td><td>{{ e.n }}</td></tr>
{% endfor %}</table></div>
{{ ab_section|safe }}
</body></html>
"""

LLM_COLUMNS = [
    "records",
    "called",
    "used",
    "cache_hits",
    "fallbacks",
    "hallucination_rate",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_ms_mean",
]

#: Short column headers (the JSON keeps the long names).
LABELS = {
    "n_judged": "judged",
    "llm_involvement_rate": "LLM share",
    "hallucination_rate": "halluc.",
    "latency_ms_p50": "p50 ms",
    "latency_ms_p95": "p95 ms",
    "cost_usd_mean": "$ / req",
    "cache_hits": "cache hits",
    "tokens_in": "tokens in",
    "tokens_out": "tokens out",
    "cost_usd": "cost $",
    "latency_ms_mean": "mean ms",
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _ci(interval: Any) -> str:
    if not interval:
        return "-"
    return f"[{interval[0]:.3g}, {interval[1]:.3g}]"


def columns_for(report: dict[str, Any]) -> list[list[str]]:
    """The metric columns shown per slice, in two groups: ranking; the rest."""
    k = report["k"]
    return [
        ["n", "n_judged", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "mrr", f"hit_rate@{k}"],
        [
            "coverage",
            "ild",
            "novelty",
            "llm_involvement_rate",
            "hallucination_rate",
            "latency_ms_p50",
            "latency_ms_p95",
            "cost_usd_mean",
        ],
    ]


#: Why a column can be empty everywhere.
_EMPTY_WHY = {
    "ild": "no item categories or vectors: pass --categories",
    "hallucination_rate": "no rerank or explanation call",
    "cost_usd_mean": "no LLM log of its own (a counterfactual)",
}


def _tables(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per system: its metric groups, each with the rows and the columns that have values."""
    out: dict[str, list[dict[str, Any]]] = {}
    titles = ("ranking", "coverage, diversity, LLM and cost")
    for name, system in report["systems"].items():
        rows: list[tuple[str, dict[str, Any]]] = [("overall", system["overall"])]
        for key, slices in system.items():
            if key.startswith("by_"):
                rows += [(f"{key[3:]}={value}", m) for value, m in slices.items()]
        groups = []
        for title, wanted in zip(titles, columns_for(report), strict=True):
            present = [c for c in wanted if c not in system.get("omitted", {})]
            columns = [c for c in present if any(m.get(c) is not None for _, m in rows)]
            empty = [c for c in present if c not in columns]
            why = "; ".join(f"{c}: {_EMPTY_WHY[c]}" for c in empty if c in _EMPTY_WHY)
            groups.append(
                {
                    "title": title,
                    "columns": columns,
                    "rows": rows,
                    "empty": empty,
                    "why": why or "nothing to measure in this archive",
                }
            )
        out[name] = groups
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


Series = dict[str, list[tuple[float | None, list[float] | None]]]


def _bars(title: str, groups: list[str], series: Series, ylabel: str) -> str:
    """Grouped bars, each with its interval as an error bar (none where unknown)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.2, 3.0))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for n, (label, points) in enumerate(series.items()):
        xs = [i + n * width for i in range(len(groups))]
        values = [v if v is not None else 0.0 for v, _ in points]
        low = [max(0.0, v - ci[0]) if ci and v is not None else 0.0 for v, ci in points]
        high = [max(0.0, ci[1] - v) if ci and v is not None else 0.0 for v, ci in points]
        ax.bar(xs, values, width=width, label=label, yerr=[low, high], capsize=3)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _png(fig)


def _point(metrics: dict[str, Any] | None, name: str) -> tuple[float | None, list[float] | None]:
    metrics = metrics or {}
    return metrics.get(name), (metrics.get("ci") or {}).get(name)


def _figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    k = report["k"]
    figures = []
    systems = report["systems"]
    buckets = sorted({b for s in systems.values() for b in s["by_warmth_bucket"]})
    if buckets:
        for metric in (f"ndcg@{k}", f"recall@{k}"):
            series: Series = {
                name: [_point(s["by_warmth_bucket"].get(b), metric) for b in buckets]
                for name, s in systems.items()
                if metric not in s.get("omitted", {})
            }
            if series:
                figures.append(
                    (f"{metric} by warmth bucket", _bars(metric, buckets, series, metric))
                )
    production = systems.get("production")
    if production and production["by_route"]:
        routes = list(production["by_route"])
        by_route = production["by_route"]
        latency = {
            q: [_point(by_route[r], f"latency_ms_{q}") for r in routes] for q in ("p50", "p95")
        }
        figures.append(("latency by route", _bars("latency by route", routes, latency, "ms")))
        llm = {"involvement": [_point(by_route[r], "llm_involvement_rate") for r in routes]}
        figures.append(("LLM involvement by route", _bars("LLM involvement", routes, llm, "share")))
    estimates = report["off_policy"]["estimates"]
    if estimates:
        names = list(estimates)
        ope: Series = {
            est: [(estimates[n].get(est), estimates[n].get(f"{est}_ci")) for n in names]
            for est in ("ips", "snips")
        }
        figures.append(
            ("off-policy estimates", _bars("estimated mean reward", names, ope, "reward"))
        )
    return figures


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    import jinja2

    ab = report.get("enrichment_ab")
    if ab is not None:
        from recsys.evaluation.enrich_ab.html import render_ab_section

        ab_section = render_ab_section(ab)
    else:
        ab_section = ""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        ab_section=ab_section,
        r=report,
        tables=_tables(report),
        labels=LABELS,
        llm_columns=LLM_COLUMNS,
        figures=_figures(report),
        fmt=_fmt,
        ci=_ci,
        confidence=CONFIDENCE,
        resamples=RESAMPLES,
    )
