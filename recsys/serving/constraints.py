"""Which parts of a query restrict the answer, which only steer it, and why a list is short.

A query's :class:`~recsys.serving.intent.Intent` names wanted categories, excluded
categories and a year range. How much weight they carry depends on who read the query:

* the **rules** parser guesses from keywords ("heist" → Crime): its reading is a
  *soft preference* — items that match it rank first, items in an excluded category
  last, and nothing is removed;
* a **confident LLM parse** (``confidence`` at or above the policy's threshold) is taken
  at its word: its categories and years become *hard constraints*, SQL filters on
  candidate retrieval and eligibility;
* the **request itself** (``exclude_item_ids``) and the user's history (already seen or
  consumed) are always hard, and never relaxed.

When the hard constraints leave fewer than ``k`` items, the response says how many
passed and why the list is short (``eligible_count``, ``short_reason``). If the request
allows it (``fill_with_soft_matches``, the default), the rest is filled with *soft
matches*: the best items that still respect the query's exclusions but not its wanted
categories or years, those closest to them first — a user who asked for "90s comedies,
no horror" would rather see a 2001 comedy than nothing, and never a horror film.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from recsys.items.model import ItemFilters
from recsys.records import Evidence, EvidenceKind, RecommendedItem, RecRequest, Route
from recsys.serving.candidates import Candidate
from recsys.serving.intent import Intent
from recsys.serving.ports import ItemSource

__all__ = [
    "QueryConstraints",
    "Shortfall",
    "by_preference",
    "describe_filters",
    "intent_filters",
    "levels_of",
    "mark_soft_matches",
    "prefer",
    "preference_levels",
    "preference_parts",
    "query_constraints",
    "short_reason",
    "shortfall",
]

#: ``more(filters, exclude)``: eligible candidates under other filters (the route's, then
#: content retrieval's when the route runs dry).
MoreCandidates = Callable[[ItemFilters | None, set[str]], Awaitable[list[Candidate]]]


def intent_filters(intent: Intent | None) -> ItemFilters | None:
    """The intent's categories and years as item filters (None when it names none)."""
    if intent is None:
        return None
    any_ = list(intent.categories_any)
    if intent.category and intent.category not in any_:
        any_.append(intent.category)
    ranges: dict[str, tuple[float | None, float | None]] = {}
    if intent.year_min is not None or intent.year_max is not None:
        ranges["year"] = (
            float(intent.year_min) if intent.year_min is not None else None,
            float(intent.year_max) if intent.year_max is not None else None,
        )
    if not any_ and not intent.categories_none and not ranges:
        return None
    return ItemFilters(
        categories_any=any_, categories_none=list(intent.categories_none), ranges=ranges
    )


@dataclass(frozen=True)
class QueryConstraints:
    """The query's reading split into what filters and what only orders.

    Attributes:
        hard: filters every served item must pass (a confident LLM parse), or None.
        soft: preferences that order candidates without removing any (a rules parse,
            or a parse the LLM was not confident about), or None.
        source: who read the query: ``none`` (no query), ``rules`` or ``llm``.
    """

    hard: ItemFilters | None = None
    soft: ItemFilters | None = None
    source: Literal["none", "rules", "llm"] = "none"

    def relaxed(self) -> ItemFilters | None:
        """What a soft match filling a short list must still respect: the exclusions."""
        if self.hard is None or not self.hard.categories_none:
            return None
        return ItemFilters(categories_none=list(self.hard.categories_none))

    @property
    def relaxable(self) -> bool:
        """Whether relaxing the hard constraints admits more items (wanted parts exist)."""
        return self.hard is not None and bool(self.hard.categories_any or self.hard.ranges)


def query_constraints(
    intent: Intent | None, *, parsed_by_llm: bool, min_confidence: float
) -> QueryConstraints:
    """Hard constraints only from a confident LLM parse; everything else is soft."""
    if intent is None:
        return QueryConstraints()
    filters = intent_filters(intent)
    if parsed_by_llm and intent.confidence >= min_confidence:
        return QueryConstraints(hard=filters, source="llm")
    return QueryConstraints(soft=filters, source="llm" if parsed_by_llm else "rules")


async def prefer(
    items: ItemSource, ranked: Sequence[Candidate], preference: ItemFilters | None
) -> list[Candidate]:
    """``ranked`` reordered by how well each item meets ``preference``; none removed.

    Each wanted part an item meets (a wanted category, the year range) counts one; an
    excluded category puts the item after every item without one. The sort is stable,
    so the ranker's order holds among items that meet the preference equally well.
    """
    ranked = list(ranked)
    if preference is None or not ranked:
        return ranked
    return by_preference(
        ranked, await preference_levels(items, [c.item_id for c in ranked], preference)
    )


def preference_parts(preference: ItemFilters | None) -> list[tuple[ItemFilters, int]]:
    """The preference's parts and what meeting each adds to an item's level: a wanted
    category 1, the year range 1, an excluded category -10 (see :func:`prefer`)."""
    parts: list[tuple[ItemFilters, int]] = []
    if preference is None:
        return parts
    if preference.categories_any:
        parts.append((ItemFilters(categories_any=list(preference.categories_any)), 1))
    if preference.ranges:
        parts.append((ItemFilters(ranges=dict(preference.ranges)), 1))
    if preference.categories_none:
        parts.append((ItemFilters(categories_any=list(preference.categories_none)), -10))
    return parts


def levels_of(
    item_ids: Sequence[str],
    parts: Sequence[tuple[ItemFilters, int]],
    meeting: Sequence[set[str]],
) -> dict[str, int]:
    """Each item's level from the eligible items meeting each part (``meeting[i]`` for
    ``parts[i]``)."""
    level = dict.fromkeys(item_ids, 0)
    for (_, weight), met in zip(parts, meeting, strict=True):
        for item_id in met:
            level[item_id] += weight
    return level


async def preference_levels(
    items: ItemSource, item_ids: Sequence[str], preference: ItemFilters | None
) -> dict[str, int]:
    """How well each of ``item_ids`` meets ``preference`` (see :func:`prefer`); an item's
    level does not depend on the others, so it may be asked for a superset. The parts
    are one read (:meth:`~recsys.serving.ports.ItemSource.eligible_each`)."""
    parts = preference_parts(preference)
    if not parts or not item_ids:
        return dict.fromkeys(item_ids, 0)
    ids = list(item_ids)
    return levels_of(ids, parts, await items.eligible_each(ids, [part for part, _ in parts]))


def by_preference(ranked: Sequence[Candidate], level: dict[str, int]) -> list[Candidate]:
    """``ranked`` sorted by :func:`preference_levels` (stable: the ranker's order holds
    among equals)."""
    return sorted(ranked, key=lambda c: -level.get(c.item_id, 0))


def describe_filters(filters: ItemFilters | None) -> str:
    """The filters in words: ``Comedy or Drama; 1990-1999; not Horror``."""
    if filters is None:
        return "none"
    parts = []
    if filters.categories_any:
        parts.append(" or ".join(filters.categories_any))
    for name, (low, high) in sorted(filters.ranges.items()):
        lo = "" if low is None else f"{low:g}"
        hi = "" if high is None else f"{high:g}"
        parts.append(f"{name} {lo}-{hi}" if name != "year" else f"{lo}-{hi}")
    if filters.categories_none:
        parts.append("not " + ", ".join(filters.categories_none))
    return "; ".join(parts) or "none"


def short_reason(
    *,
    k: int,
    catalog: int,
    available: int,
    passed: int,
    found: int,
    route: str,
    constraints: QueryConstraints,
    filled: int,
    fill_allowed: bool,
) -> str:
    """Why fewer than ``k`` items passed, in one sentence a caller can show.

    Args:
        k: items asked for.
        catalog: eligible items in the catalog (live, available, embedded).
        available: of those, the ones the user has not seen or consumed and the request
            does not exclude.
        passed: of those, the ones that pass the hard constraints (= ``available``
            without any).
        found: candidates the route produced that passed.
        route: the route taken.
        constraints: the query's reading.
        filled: soft matches added after the passing items.
        fill_allowed: whether the request allowed soft matches.
    """
    seen = catalog - available
    if passed < k:
        reason = f"only {passed} of the {catalog} eligible items in the catalog"
        if constraints.hard is not None:
            reason += f" pass the query's hard constraints ({describe_filters(constraints.hard)})"
            reason += f" and were not seen or excluded ({seen} were)"
        else:
            reason += f" were not already seen, consumed or excluded by the request ({seen} were)"
    else:
        reason = f"the {route} route found {found} of the {passed} items that could be served"
    if filled:
        reason += f"; {filled} soft match(es) outside the constraints fill the rest"
    elif constraints.relaxable and not fill_allowed:
        reason += "; the request asked for no soft matches"
    return reason


@dataclass(frozen=True)
class Shortfall:
    """What a request whose route found fewer than k candidates got instead.

    Attributes:
        passed: eligible items that pass the hard constraints and the exclusions.
        reason: why fewer than k items pass (None when the top-up reached k).
        topup: items that pass every constraint, found by content retrieval when the
            route itself ran dry (e.g. an explored POPULARITY route on a catalog that
            has no interactions yet).
        fill: soft matches after them (outside the wanted categories or years).
    """

    passed: int
    reason: str | None
    topup: list[Candidate] = field(default_factory=list)
    fill: list[Candidate] = field(default_factory=list)


async def shortfall(
    items: ItemSource,
    request: RecRequest,
    route: Route,
    constraints: QueryConstraints,
    exclude: set[str],
    ranked: Sequence[Candidate],
    more: MoreCandidates,
) -> Shortfall:
    """Count what could pass (in the store), top up from content retrieval when the
    route found fewer items than could pass, fill with soft matches where the request
    allows, and say why the list is short.

    Args:
        items: the item store.
        request: the request (its ``k`` and ``fill_with_soft_matches``).
        route: the route taken.
        constraints: the query's reading.
        exclude: what the user saw or consumed and the request excludes.
        ranked: the eligible candidates that passed (fewer than ``k``).
        more: candidates under other filters: the route's, then content retrieval's.
    """
    catalog = await items.count_eligible(None, ())
    available = await items.count_eligible(None, exclude)
    passed = (
        available
        if constraints.hard is None
        else await items.count_eligible(constraints.hard, exclude)
    )
    taken = exclude | {c.item_id for c in ranked}
    topup: list[Candidate] = []
    if len(ranked) < min(request.k, passed):
        found = await more(constraints.hard, taken)
        topup = (await prefer(items, found, constraints.soft))[: request.k - len(ranked)]
        taken |= {c.item_id for c in topup}
    have = len(ranked) + len(topup)
    if have >= request.k:
        return Shortfall(passed=passed, reason=None, topup=topup)
    fill: list[Candidate] = []
    if constraints.relaxable and request.fill_with_soft_matches:
        found = await more(constraints.relaxed(), taken)
        fill = (await prefer(items, found, constraints.hard))[: request.k - have]
    reason = short_reason(
        k=request.k,
        catalog=catalog,
        available=available,
        passed=passed,
        found=have,
        route=route.value,
        constraints=constraints,
        filled=len(fill),
        fill_allowed=request.fill_with_soft_matches,
    )
    return Shortfall(passed=passed, reason=reason, topup=topup, fill=fill)


def mark_soft_matches(
    items: list[RecommendedItem], short: Shortfall | None, constraints: QueryConstraints
) -> list[RecommendedItem]:
    """Soft matches carry one more piece of evidence: that they are outside the constraints."""
    filled = {c.item_id for c in short.fill} if short is not None else set()
    if not filled:
        return items
    note = Evidence(
        kind=EvidenceKind.OTHER,
        value="a soft match outside the query's constraints "
        f"({describe_filters(constraints.hard)})",
    )
    return [
        i.model_copy(update={"evidence": [*i.evidence, note]}) if i.item_id in filled else i
        for i in items
    ]
