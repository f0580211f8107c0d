"""The demo's closing section: a few real responses as a product would get them, item by
item — title, explanation, evidence, route, warmth and what the LLM changed — and the
commands that evaluate what the run archived.

Four kinds are shown when the run has them: a warm user without a query, a cold user
with a query, a response the LLM reranked, and one where the LLM was asked and the
ranker's order was served instead (with the simulated LLM the demo provokes one: the
model is told to answer with ids that are not candidates for a single request).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from recsys.records import CatalogChange, LlmInvolvement, LlmUseCase, RecRequest, RecResponse
from recsys.records import WarmthBucket as W
from streams.settings import Settings

__all__ = ["NOT_ASKED", "Exchange", "next_commands", "pick", "print_exchange", "print_next"]

#: Rerank decisions that mean the request was not one the LLM reranks at all.
NOT_ASKED = frozenset({"not_eligible", "too_few_candidates", "disabled"})
#: Items shown per response.
SHOWN = 5


@dataclass(frozen=True)
class Exchange:
    """One request, its response and the rec.llm-log records of it."""

    request: RecRequest
    response: RecResponse
    logs: tuple[LlmInvolvement, ...] = ()

    def record(self, use: LlmUseCase) -> LlmInvolvement | None:
        """The first log record of this use case."""
        return next((r for r in self.logs if r.use_case is use), None)

    @property
    def reranked(self) -> bool:
        """The LLM reordered this response."""
        rerank = self.record(LlmUseCase.RERANK)
        return rerank is not None and rerank.used

    @property
    def fell_back(self) -> bool:
        """The request was one the LLM reranks, and the ranker's order was served."""
        rerank = self.record(LlmUseCase.RERANK)
        return (
            rerank is not None
            and not rerank.used
            and (rerank.fallback_reason or rerank.decision) not in NOT_ASKED
        )


def pick(exchanges: Sequence[Exchange]) -> dict[str, Exchange]:
    """One exchange per kind (title → exchange), each a different request."""
    kinds = {
        "a warm user, no query": lambda x: (
            x.response.warmth_bucket is W.WARM and not x.request.query
        ),
        "a cold user with a query": lambda x: (
            x.response.warmth_bucket is W.COLD and bool(x.request.query)
        ),
        "the LLM reranked": lambda x: x.reranked,
        "the LLM fell back to the ranker's order": lambda x: x.fell_back,
    }
    chosen: dict[str, Exchange] = {}
    used: set[str] = set()
    for title in reversed(kinds):  # the rarer kinds choose first
        for x in exchanges:
            if x.request.request_id not in used and x.response.items and kinds[title](x):
                chosen[title] = x
                used.add(x.request.request_id)
                break
    return {title: chosen[title] for title in kinds if title in chosen}


def _llm_line(x: Exchange) -> str:
    """What the LLM did to this response, in one line."""
    rerank = x.record(LlmUseCase.RERANK)
    intent = x.record(LlmUseCase.INTENT)
    parts = []
    if intent is not None:
        parts.append(
            "read the query" if intent.used else f"query read by the rules ({intent.decision})"
        )
    if rerank is None:
        parts.append("no rerank decision logged")
    elif rerank.used:
        moved = sum(1 for i in x.response.items if i.ranker_rank not in (None, i.rank))
        parts.append(
            f"reranked the list ({moved} of {len(x.response.items)} items moved"
            f"{', from the cache' if rerank.cache_hit else ''})"
        )
    elif (rerank.fallback_reason or rerank.decision) in NOT_ASKED:
        parts.append(f"not asked to rerank ({rerank.decision})")
    else:
        why = rerank.fallback_reason or rerank.decision
        if rerank.hallucinated_ids:
            why += f": ids that are no candidates {', '.join(rerank.hallucinated_ids[:3])}"
        elif rerank.validation_errors:
            why += f": {rerank.validation_errors[0][:80]}"
        verb = "answered, rejected" if rerank.called else "not called"
        parts.append(f"{verb} ({why}); the ranker's order was served")
    worded = sum(1 for i in x.response.items if i.explanation_source.value == "LLM")
    if worded:
        parts.append(f"worded {worded} explanation(s)")
    return "LLM: " + "; ".join(parts)


def print_exchange(
    console: Console, n: int, title: str, x: Exchange, catalog: Mapping[str, CatalogChange]
) -> None:
    """One response, item by item."""
    r = x.response
    query = f" · query “{escape(x.request.query)}”" if x.request.query else ""
    console.print(
        f"[bold]{n}. {title}[/] — user {r.user_id} · warmth {r.warmth_bucket.value} · "
        f"route {r.route.value}{query} · {r.latency_ms:.0f} ms",
        highlight=False,
    )
    console.print(f"   {escape(_llm_line(x))}", highlight=False)
    if r.short_reason:
        console.print(f"   short list: {escape(r.short_reason)}", highlight=False)
    for item in r.items[:SHOWN]:
        change = catalog.get(item.item_id)
        name = change.title if change is not None and change.title else item.item_id
        cats = ", ".join(change.categories) if change is not None else ""
        moved = (
            f" (ranker #{item.ranker_rank})"
            if item.ranker_rank is not None and item.ranker_rank != item.rank
            else ""
        )
        console.print(
            f"   {item.rank:>2}. {escape(name)} [dim]— {escape(cats)} · {item.source}[/]{moved}",
            highlight=False,
        )
        wording = " [dim](LLM wording)[/]" if item.explanation_source.value == "LLM" else ""
        console.print(f"       {escape(item.explanation)}{wording}", highlight=False)
        facts = "; ".join(_fact(e.kind.value.lower(), e.value) for e in item.evidence)
        console.print(f"       [dim]evidence: {escape(facts)}[/]", highlight=False)
    if len(r.items) > SHOWN:
        console.print(f"       … and {len(r.items) - SHOWN} more", highlight=False)


def _program() -> str:
    """How the user started streamrec (``.venv/bin/streamrec`` from ``make demo``)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "streamrec":
        return str(argv0)
    return "streamrec"


def next_commands(settings: Settings, program: str | None = None) -> list[str]:
    """The evaluate and replay commands that work on what this run archived."""
    sr = program or _program()
    prefix = shlex.quote(settings.topic_prefix)
    report = settings.home / "reports" / f"{settings.topic_prefix.rstrip('.') or 'demo'}.html"
    return [
        f"{sr} evaluate --topic-prefix {prefix} --html {shlex.quote(str(report))}",
        f"{sr} replay rec.requests --source archive --topic-prefix {prefix} --policy no-llm",
        f"{sr} evaluate --topic-prefix {prefix} --policy no-llm",
    ]


def print_next(console: Console, settings: Settings) -> None:
    """What to run next, and the exact commands for this run's archive."""
    console.print(
        f"[bold]next:[/] evaluate this run's archive (topic prefix {settings.topic_prefix}), "
        "replay its requests through another policy, compare; or `streamrec up` (README):",
        highlight=False,
    )
    for command in next_commands(settings):
        console.print(f"  {escape(command)}", highlight=False, soft_wrap=True)


def _fact(kind: str, value: str) -> str:
    """One evidence fact as shown: its kind, then its value (once when the value says it)."""
    return value if value.lower().startswith(kind) else f"{kind} {value}"
