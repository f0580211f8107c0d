"""A self-contained HTML report of an evaluation: tables plus matplotlib figures
embedded as base64 PNG (one file, no external assets), rendered with jinja2."""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["render_html"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamrec evaluation</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
</style></head><body>
<h1>streamrec evaluation</h1>
<p class="note">k = {{ r.k }} · relevance from {{ r.relevance_source }} (positive outcomes within
{{ r.window_s|int }} s after the impression) · catalog size {{ r.catalog_size }}
({{ r.catalog_source }}) · diversity from {{ r.diversity_source or "n/a (no categories or vectors)" }}</p>
{% for name, system in r.systems.items() %}
<h2>{{ name }}</h2>
{% for group, rows in tables[name].items() %}
<h3>{{ group }}</h3>
<table><tr><th>slice</th>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for label, m in rows %}<tr><td>{{ label }}</td>{% for c in columns %}<td>{{ fmt(m.get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% endfor %}
{% endfor %}
{% for title, png in figures %}<h2>{{ title }}</h2><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
{% endfor %}
<h2>LLM log</h2>
<table><tr><th>use case</th>{% for c in llm_columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for case, m in r.llm.items() %}<tr><td>{{ case }}</td>{% for c in llm_columns %}<td>{{ fmt(m.get(c)) }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Off-policy estimates</h2>
<p class="note">Reward: {{ r.off_policy.reward }} · clip: {{ r.off_policy.clip }} · logged requests with
feedback: {{ r.off_policy.n_logged }} · logged mean reward: {{ fmt(r.off_policy.logged_mean_reward) }}{% if r.off_policy.get("router") %} · router = {{ r.off_policy.router }}{% endif %}.
IPS/SNIPS assume the logged propensities are the logging policy's true action probabilities,
that every action the target takes had a non-zero logging probability (ESS and support show
how much of the log agrees), and that rewards depend only on each request's context and action.</p>
<table><tr><th>target policy</th><th>ips</th><th>snips</th><th>ess</th><th>support</th><th>n</th></tr>
{% for name, e in r.off_policy.estimates.items() %}<tr><td>{{ name }}</td><td>{{ fmt(e.ips) }}</td><td>{{ fmt(e.snips) }}</td><td>{{ fmt(e.ess) }}</td><td>{{ fmt(e.support) }}</td><td>{{ e.n }}</td></tr>
{% endfor %}</table>
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


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def columns_for(report: dict[str, Any]) -> list[str]:
    """The metric columns shown per slice."""
    k = report["k"]
    return [
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
        "latency_ms_p95",
        "cost_usd_mean",
    ]


def _tables(report: dict[str, Any]) -> dict[str, dict[str, list[tuple[str, dict[str, Any]]]]]:
    out: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}
    for name, system in report["systems"].items():
        groups: dict[str, list[tuple[str, dict[str, Any]]]] = {
            "overall": [("all", system["overall"])]
        }
        for key, slices in system.items():
            if key.startswith("by_"):
                groups[key[3:]] = list(slices.items())
        out[name] = groups
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _bars(title: str, groups: list[str], series: dict[str, list[float]], ylabel: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for n, (label, values) in enumerate(series.items()):
        xs = [i + n * width for i in range(len(groups))]
        ax.bar(xs, values, width=width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize="small")
    return _png(fig)


def _figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    k = report["k"]
    figures = []
    systems = report["systems"]
    buckets = sorted({b for s in systems.values() for b in s["by_warmth_bucket"]})
    if buckets:
        for metric in (f"ndcg@{k}", f"recall@{k}"):
            series = {
                name: [(s["by_warmth_bucket"].get(b) or {}).get(metric) or 0.0 for b in buckets]
                for name, s in systems.items()
            }
            figures.append((f"{metric} by warmth bucket", _bars(metric, buckets, series, metric)))
    production = systems.get("production")
    if production and production["by_route"]:
        routes = list(production["by_route"])
        series = {
            q: [production["by_route"][r].get(f"latency_ms_{q}") or 0.0 for r in routes]
            for q in ("p50", "p95")
        }
        figures.append(("latency by route", _bars("latency by route", routes, series, "ms")))
        llm = {
            "involvement": [
                production["by_route"][r].get("llm_involvement_rate") or 0.0 for r in routes
            ]
        }
        figures.append(("LLM involvement by route", _bars("LLM involvement", routes, llm, "share")))
    estimates = report["off_policy"]["estimates"]
    if estimates:
        names = list(estimates)
        series = {est: [estimates[n].get(est) or 0.0 for n in names] for est in ("ips", "snips")}
        figures.append(
            ("off-policy estimates", _bars("estimated mean reward", names, series, "reward"))
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
        columns=columns_for(report),
        llm_columns=LLM_COLUMNS,
        figures=_figures(report),
        fmt=_fmt,
    )
