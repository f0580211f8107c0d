"""The A/B report as HTML: a section (also embedded in `streamrec evaluate --ab`'s report)
and a self-contained page — tables plus one matplotlib figure as a base64 PNG."""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["render_ab_html", "render_ab_section"]

_SECTION = """<section class="enrichment-ab">
<h2>Enrichment A/B: raw vs enriched embeddings</h2>
<p class="note">Query set {{ q.version }} · seed {{ q.seed }} · fingerprint {{ q.fingerprint }} ·
{{ q.queries.tag }} tag queries, {{ q.queries.conversation }} conversations · catalog
{{ q.catalog_items }} items ({{ q.catalog }}) · embeddings {{ r.embedding_model }} ·
k = {{ r.k }} · {{ (r.bootstrap.confidence * 100)|int }}% CI: {{ r.bootstrap.method }},
{{ r.bootstrap.resamples }} resamples.</p>
{% if e.status == "off" %}<p class="note"><b>Enrichment off:</b> {{ e.reason }}.</p>
{% else %}<p class="note">Enrichment: {% if e.simulated %}<b>SIMULATED LLM</b> {% endif %}{{ e.model }},
prompt {{ e.prompt_version }}: {{ e.enriched }}/{{ e.items }} items enriched,
{{ e.fell_back_to_raw }} fell back to raw text.</p>{% endif %}
<table><tr><th>queries</th><th>metric</th><th>raw</th><th>enriched</th><th>delta</th><th>CI</th><th>n</th></tr>
{% for kind, metrics in r.retrieval.items() %}{% for name, s in metrics.items() %}<tr><td>{{ kind }}</td><td>{{ name }}</td>
<td>{{ f(s.raw) }}</td><td>{{ f(s.enriched) }}</td><td>{{ d(s.delta) }}</td><td>{{ ci(s) }}</td><td>{{ s.n }}</td></tr>
{% endfor %}{% endfor %}</table>
{% if png %}<img alt="raw vs enriched" src="data:image/png;base64,{{ png }}">{% endif %}
<h3>Justification quality (LLM judge)</h3>
{% if j.status != "ran" %}<p class="note"><b>Judge {{ j.reason }}</b> (prompt {{ j.prompt_name }} {{ j.prompt_version }}).</p>
{% else %}<p class="note">{% if j.simulated %}<b>SIMULATED judge</b> · {% endif %}model {{ j.model }} (answered by
{{ j.answered_by|join(", ") }}) · prompt {{ j.prompt_name }} {{ j.prompt_version }} · temperature
{{ j.temperature }} · top {{ j.items_per_query }} items of each arm on {{ j.queries }} queries ·
failures {{ j.failures or "none" }}.</p>
<table><tr><th>queries</th><th>raw</th><th>enriched</th><th>delta</th><th>CI</th><th>n</th></tr>
{% for kind, s in j.scores.items() %}<tr><td>{{ kind }}</td><td>{{ f(s.raw) }}</td><td>{{ f(s.enriched) }}</td>
<td>{{ d(s.delta) }}</td><td>{{ ci(s) }}</td><td>{{ s.n }}</td></tr>{% endfor %}</table>
{% for x in j.examples %}<p class="note">“{{ x.query }}” · {{ x.arm }} · item {{ x.item_id }}:
{{ x.score }}/5 — {{ x.reason }}</p>{% endfor %}{% endif %}
</section>
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamrec enrichment A/B</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
.note { color: #555; font-size: 0.85rem; max-width: 60rem; }
</style></head><body>
{{ section|safe }}
</body></html>
"""


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _d(value: Any) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _ci(stats: dict[str, Any]) -> str:
    low, high = stats.get("ci_low"), stats.get("ci_high")
    return "-" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]"


def _figure(report: dict[str, Any]) -> str | None:
    """Raw vs enriched per query kind and metric, the enriched bar with its CI."""
    from matplotlib.figure import Figure

    rows = [
        (f"{kind}\n{name}", s)
        for kind, metrics in report["retrieval"].items()
        for name, s in metrics.items()
        if s["raw"] is not None
    ]
    if not rows:
        return None
    fig = Figure(figsize=(max(6.0, len(rows) * 1.2), 3.2))
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [s["raw"] for _, s in rows], width=0.4, label="raw")
    errors = [
        [max(0.0, s["delta"] - s["ci_low"]) if s["ci_low"] is not None else 0.0 for _, s in rows],
        [max(0.0, s["ci_high"] - s["delta"]) if s["ci_high"] is not None else 0.0 for _, s in rows],
    ]
    ax.bar(
        [x + 0.2 for x in xs],
        [s["enriched"] for _, s in rows],
        width=0.4,
        yerr=errors,
        capsize=3,
        label="enriched (delta CI)",
    )
    ax.set_xticks(xs, [label for label, _ in rows], fontsize="small")
    enrichment = report["enrichment"]
    label = {"off": " (LLM off: arms identical)", "simulated": " (SIMULATED LLM)"}
    ax.set_title("raw vs enriched embeddings" + label.get(enrichment["status"], ""))
    ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def render_ab_section(report: dict[str, Any]) -> str:
    """The A/B as an HTML section (no page around it)."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_SECTION).render(
        r=report,
        q=report["query_set"],
        e=report["enrichment"],
        j=report["judge"],
        png=_figure(report),
        f=_f,
        d=_d,
        ci=_ci,
    )


def render_ab_html(report: dict[str, Any]) -> str:
    """The A/B as one self-contained HTML page."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_PAGE).render(section=render_ab_section(report))
