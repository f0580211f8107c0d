"""Hard vs soft readings of a query, soft ordering and the short-list sentence."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from recsys.items.memory import InMemoryItemStore
from recsys.items.model import ItemFilters, ItemRecord
from recsys.serving.candidates import Candidate
from recsys.serving.constraints import (
    QueryConstraints,
    describe_filters,
    prefer,
    query_constraints,
    short_reason,
)
from recsys.serving.intent import Intent, parse_rules

CATS = ["Comedy", "Crime", "Drama", "Horror", "Thriller"]


def test_a_rules_reading_is_only_a_preference() -> None:
    intent = parse_rules("a tense heist film", CATS)
    assert intent.categories_any == ["Crime"]  # the keyword guess
    c = query_constraints(intent, parsed_by_llm=False, min_confidence=0.0)
    assert c.hard is None and c.source == "rules"
    assert c.soft is not None and list(c.soft.categories_any) == ["Crime"]
    # even a rules reading that claims full confidence never filters
    sure = intent.model_copy(update={"confidence": 1.0})
    assert query_constraints(sure, parsed_by_llm=False, min_confidence=0.0).hard is None


def test_only_a_confident_llm_reading_is_hard() -> None:
    intent = Intent(categories_any=["Comedy"], categories_none=["Horror"], year_min=1990)
    confident = intent.model_copy(update={"confidence": 0.9})
    unsure = intent.model_copy(update={"confidence": 0.4})
    hard = query_constraints(confident, parsed_by_llm=True, min_confidence=0.7)
    assert hard.soft is None and hard.hard is not None and hard.source == "llm"
    assert list(hard.hard.categories_any) == ["Comedy"]
    assert dict(hard.hard.ranges) == {"year": (1990.0, None)}
    assert hard.relaxable
    # a soft match still respects the exclusions, nothing else
    relaxed = hard.relaxed()
    assert relaxed == ItemFilters(categories_none=["Horror"])
    soft = query_constraints(unsure, parsed_by_llm=True, min_confidence=0.7)
    assert soft.hard is None and soft.soft is not None
    assert query_constraints(None, parsed_by_llm=False, min_confidence=0.7) == QueryConstraints()


def test_describe_filters() -> None:
    f = ItemFilters(
        categories_any=["Comedy", "Drama"],
        categories_none=["Horror"],
        ranges={"year": (1990, 1999)},
    )
    assert describe_filters(f) == "Comedy or Drama; 1990-1999; not Horror"
    assert describe_filters(None) == "none"


class _Items:
    """The slice of :class:`~recsys.serving.ports.ItemSource` that ``prefer`` reads."""

    def __init__(self, store: InMemoryItemStore) -> None:
        self.store = store

    async def eligible(self, item_ids: Sequence[str], filters: ItemFilters | None) -> set[str]:
        return await self.store.eligible_ids(list(item_ids), filters)

    async def eligible_each(
        self, item_ids: Sequence[str], filter_sets: Sequence[ItemFilters | None]
    ) -> list[set[str]]:
        return await self.store.eligible_ids_each(list(item_ids), filter_sets)

    async def count_eligible(self, filters: ItemFilters | None, exclude: Collection[str]) -> int:
        return await self.store.count_eligible(filters, list(exclude))


def _item(item_id: str, categories: tuple[str, ...], year: int) -> ItemRecord:
    vec = np.ones(8, dtype=np.float32)
    return ItemRecord(
        item_id=item_id,
        version=1,
        change_id=f"{item_id}-1",
        content_hash=item_id,
        title=item_id,
        categories=categories,
        attributes={"year": str(year)},
        raw_embedding=vec,
        enriched_embedding=vec,
        embedding_model="test",
    )


async def test_prefer_orders_by_how_much_matches_and_removes_nothing() -> None:
    store = InMemoryItemStore(dim=8)
    await store.apply(
        [
            _item("drama-95", ("Drama",), 1995),
            _item("horror-crime", ("Horror", "Crime"), 1995),
            _item("crime-80", ("Crime",), 1980),
            _item("crime-95", ("Crime",), 1995),
            _item("comedy-80", ("Comedy",), 1980),
        ]
    )
    items = _Items(store)
    ranked = [
        Candidate(i, 1.0, "content")
        for i in ("drama-95", "horror-crime", "crime-80", "crime-95", "comedy-80")
    ]
    preference = ItemFilters(
        categories_any=["Crime"], categories_none=["Horror"], ranges={"year": (1990, 1999)}
    )
    ordered = [c.item_id for c in await prefer(items, ranked, preference)]  # type: ignore[arg-type]
    # both wanted parts, then one (ranker order kept), then none, then the excluded one
    assert ordered == ["crime-95", "drama-95", "crime-80", "comedy-80", "horror-crime"]
    assert await prefer(items, ranked, None) == ranked  # type: ignore[arg-type]
    assert await items.count_eligible(ItemFilters(categories_any=["Crime"]), ["crime-80"]) == 2


def test_short_reason_says_how_many_passed_and_why() -> None:
    rules = QueryConstraints(soft=ItemFilters(categories_any=["Crime"]), source="rules")
    text = short_reason(
        k=10,
        catalog=4,
        available=3,
        passed=3,
        found=3,
        route="HYBRID",
        constraints=rules,
        filled=0,
        fill_allowed=True,
    )
    assert text == (
        "only 3 of the 4 eligible items in the catalog were not already seen, consumed or "
        "excluded by the request (1 were)"
    )
    hard = QueryConstraints(hard=ItemFilters(categories_any=["Crime"]), source="llm")
    text = short_reason(
        k=10,
        catalog=4,
        available=3,
        passed=1,
        found=1,
        route="CONTENT",
        constraints=hard,
        filled=2,
        fill_allowed=True,
    )
    assert "only 1 of the 4 eligible items" in text and "hard constraints (Crime)" in text
    assert text.endswith("2 soft match(es) outside the constraints fill the rest")
    strict = short_reason(
        k=10,
        catalog=4,
        available=3,
        passed=1,
        found=1,
        route="CONTENT",
        constraints=hard,
        filled=0,
        fill_allowed=False,
    )
    assert strict.endswith("the request asked for no soft matches")
    route_short = short_reason(
        k=10,
        catalog=500,
        available=480,
        passed=480,
        found=4,
        route="POPULARITY",
        constraints=QueryConstraints(),
        filled=0,
        fill_allowed=True,
    )
    assert route_short == "the POPULARITY route found 4 of the 480 items that could be served"
