"""A self-contained HTML page of a ``learn-policy`` report: the decision and why, the
estimates with their intervals, the rules before and after, every candidate per cell,
and what could not be estimated (matplotlib figures inlined as base64 PNG)."""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["render_policy_html"]

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamrec learn-policy</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child, td.l { text-align: left; }
th { background: #f3f3f3; }
tr.chosen td { font-weight: bold; }
tr.bad td { color: #999; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
.decision { font-size: 1.1rem; padding: 0.5rem 1rem; border-left: 4px solid {{ colour }}; }
</style></head><body>
<h1>streamrec learn-policy</h1>
<p class="decision">{{ r.reason }}{% if r.activated %}<br>activated version
<b>{{ r.activated }}</b>{% endif %}</p>
<p class="note">{{ r.examples }} feedback examples from {{ r.source }} ({{ r.topic }}) →
{{ r.n_requests }} logged requests ({{ r.n_selection }} to choose, {{ r.n_holdout }} held out
to judge; split seed {{ r.config.seed }}) · reward: {{ r.reward }} (a request succeeds when any
shown item does) · logged mean reward {{ fmt(r.logged_mean_reward) }} · decision estimator
{{ r.config.estimator|upper }}, {{ (r.config.confidence * 100)|round|int }}% bootstrap intervals
({{ r.config.resamples }} resamples) · current policy {{ r.current.version }}
({{ r.current_source }}) · left out: {{ r.skipped }} · logged by: {{ r.logged_by }}
{% if r.dry_run %} · <b>dry run</b>: nothing stored{% endif %}</p>
<h2>Policies on the holdout</h2>
<table><tr><th>policy</th><th>n</th><th>matched</th><th>ESS</th><th>IPS</th><th>SNIPS</th>
<th>SNIPS interval</th><th>DR</th><th>DR interval</th></tr>
{% for name, parts in r.estimates.items() %}{% set e = parts.overall %}
<tr{% if name == "learned" %} class="chosen"{% endif %}><td>{{ name }}</td><td>{{ e.n }}</td>
<td>{{ e.matched }}</td><td>{{ fmt(e.ess) }}</td><td>{{ fmt(e.ips) }}</td><td>{{ fmt(e.snips) }}</td>
<td>{{ ci(e.ci.snips) }}</td><td>{{ fmt(e.dr) }}</td><td>{{ ci(e.ci.dr) }}</td></tr>
{% endfor %}</table>
{% for title, png in figures %}<h3>{{ title }}</h3><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
{% endfor %}
<h2>By warmth bucket ({{ r.config.estimator|upper }}, holdout)</h2>
<table><tr><th>policy</th>{% for b in buckets %}<th>{{ b }}</th><th>interval</th><th>n</th>{% endfor %}</tr>
{% for name, parts in r.estimates.items() %}<tr><td>{{ name }}</td>
{% for b in buckets %}{% set e = parts[b] %}<td>{{ fmt(e[r.config.estimator]) }}</td>
<td>{{ ci(e.ci[r.config.estimator]) }}</td><td>{{ e.n }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Rules</h2>
<table><tr><th>cell</th><th>current ({{ r.current.version }})</th><th>learned</th></tr>
{% for cell, rule in r.current.cells.items() %}<tr{% if cell in r.changed_cells %} class="chosen"{% endif %}>
<td>{{ cell }}</td><td class="l">{{ label(rule) }}</td><td class="l">{{ label(r.learned.cells[cell]) }}</td></tr>
{% endfor %}</table>
<p class="note">Exploration ε — current: {{ r.current.epsilon }}; learned: {{ r.learned.epsilon }}.</p>
<h2>Candidates per cell (selection part)</h2>
<table><tr><th>cell</th><th>rule</th><th>matched</th><th>ESS</th><th>SNIPS</th><th>interval</th>
<th>DR</th><th>interval</th><th>estimable</th></tr>
{% for c in r.candidates %}<tr class="{% if c.chosen %}chosen{% elif not c.estimable %}bad{% endif %}">
<td>{{ c.cell }}</td><td class="l">{{ c.rule }}{% if c.current %} (current){% endif %}</td>
<td>{{ c.matched }}</td><td>{{ fmt(c.ess) }}</td><td>{{ fmt(c.snips) }}</td><td>{{ ci(c.ci.snips) }}</td>
<td>{{ fmt(c.dr) }}</td><td>{{ ci(c.ci.dr) }}</td>
<td class="l">{{ "yes" if c.estimable else c.reason }}</td></tr>
{% endfor %}</table>
<h2>Could not be estimated</h2>
{% if r.unsupported %}<ul>{% for u in r.unsupported %}<li>{{ u }}</li>{% endfor %}</ul>
{% else %}<p class="note">Every candidate had support in the logs.</p>{% endif %}
<p class="note">Assumptions: the logged propensities are the exact probabilities of the
logged actions (serving logs them from the policy's definition); every action a candidate
takes had a non-zero logging probability in the contexts it meets (candidates without
support are named above and never chosen); a request's reward depends on its context and
action only. Intervals cover the sampling noise of the logs (bootstrap over requests, the
DR reward model held fixed), not a misspecified reward model. Choosing and judging use
different requests, so the learned policy's estimate is not inflated by its selection.</p>
</body></html>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _ci(value: Any) -> str:
    return "-" if not value else f"[{value[0]:.4f}, {value[1]:.4f}]"


def _label(rule: dict[str, Any]) -> str:
    route = rule["route"]
    if route == "HYBRID":
        route += f"(c{rule['content_weight']:g},p{rule['popularity_weight']:g})"
    return route + ("+rerank" if rule["rerank"] else "")


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _policy_figure(report: dict[str, Any]) -> str | None:
    from matplotlib.figure import Figure

    est = report["config"]["estimator"]
    names, values, lows, highs = [], [], [], []
    for name, parts in report["estimates"].items():
        e = parts["overall"]
        if e[est] is None:
            continue
        names.append(name)
        values.append(e[est])
        ci = e["ci"][est] or [e[est], e[est]]
        lows.append(e[est] - ci[0])
        highs.append(ci[1] - e[est])
    if not names:
        return None
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    colours = ["#d62728" if n == "learned" else "#1f77b4" for n in names]
    ax.bar(range(len(names)), values, yerr=[lows, highs], color=colours, capsize=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel(f"estimated reward ({est.upper()})")
    return _png(fig)


def render_policy_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    import jinja2

    figures = []
    png = _policy_figure(report)
    if png is not None:
        figures.append(("estimated value with intervals (holdout)", png))
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        r=report,
        buckets=["overall", "COLD", "WARMING", "WARM"],
        figures=figures,
        colour="#2ca02c" if report.get("activated") or report["deploy"] else "#999",
        fmt=_fmt,
        ci=_ci,
        label=_label,
    )
