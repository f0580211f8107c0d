"""One contract, known answers, every ItemStore: in-memory (numpy) and pgvector (real
embedded Postgres, HNSW indexes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from recsys import db
from recsys.items import (
    InMemoryItemStore,
    ItemFilters,
    ItemRecord,
    ItemStore,
    Tombstone,
    VersionBump,
)
from recsys.items.pgvector import PgItemStore
from recsys.records import EnrichmentStatus

DIM = 384
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def vec(**components: float) -> np.ndarray:
    """A unit vector from components named e0, e1, … (``vec(e0=0.8, e1=0.6)``)."""
    v = np.zeros(DIM, dtype=np.float32)
    for name, value in components.items():
        v[int(name[1:])] = value
    return v / np.linalg.norm(v)


def item(item_id: str, raw: np.ndarray, enriched: np.ndarray, **fields: object) -> ItemRecord:
    base: dict[str, object] = {
        "item_id": item_id,
        "version": 1,
        "change_id": f"{item_id}-c1",
        "content_hash": f"hash-{item_id}",
        "title": f"Title {item_id}",
        "raw_embedding": raw,
        "enriched_embedding": enriched,
        "embedding_model": "all-MiniLM-L6-v2",
        "embedding_dim": DIM,
        "enrichment_status": EnrichmentStatus.ENRICHED,
        "prompt_version": "p1",
        "llm_model": "sim",
        "summary": f"About {item_id}.",
        "tags": ("space",),
        "occurred_at": T0,
        "enriched_at": T0,
    }
    base.update(fields)
    return ItemRecord(**base)  # type: ignore[arg-type]


# raw: similarity to e0 is 1.0, 0.8, 0.6, 0.0, -1.0 for a..e; enriched: a..e ~ e2..e6
CATALOG = [
    item(
        "a",
        vec(e0=1),
        vec(e2=1),
        categories=("Sci-Fi",),
        attributes={"year": "1979", "language": "en"},
    ),
    item(
        "b",
        vec(e0=0.8, e1=0.6),
        vec(e3=1),
        categories=("Drama",),
        attributes={"year": "1995", "language": "en"},
    ),
    item(
        "c",
        vec(e0=0.6, e1=0.8),
        vec(e2=0.6, e4=0.8),
        categories=("Sci-Fi", "Drama"),
        attributes={"year": "2001", "language": "fr"},
    ),
    item("d", vec(e1=1), vec(e5=1), categories=("Comedy",), attributes={"year": "unknown"}),
    item("e", vec(e0=-1), vec(e6=1), categories=("Horror",), attributes={"year": "2010 "}),
]


@pytest.fixture(params=["memory", "pgvector"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ItemStore]:
    if request.param == "memory":
        yield InMemoryItemStore(DIM)
        return
    dsn = request.getfixturevalue("database")
    # a deliberately small ef_search: the store must still return k rows
    pool = db.async_pool(dsn, ef_search=10)
    await pool.open(wait=True, timeout=30)
    try:
        yield PgItemStore(pool, ef_search=10)
    finally:
        await pool.close()


@pytest.fixture
async def loaded(store: ItemStore) -> ItemStore:
    assert await store.apply(CATALOG) == {"a", "b", "c", "d", "e"}
    return store


async def test_dimension(store: ItemStore) -> None:
    assert await store.dimension() == DIM


async def test_similarities_of_given_items(loaded: ItemStore) -> None:
    sims = await loaded.similarities(vec(e0=1), ["e", "a", "c", "zz"], space="raw")
    assert sims == pytest.approx({"a": 1.0, "c": 0.6, "e": -1.0}, abs=1e-5)


async def test_knn_known_answers_in_the_raw_space(loaded: ItemStore) -> None:
    result = await loaded.knn(vec(e0=1), 5, space="raw")
    assert [i for i, _ in result] == ["a", "b", "c", "d", "e"]
    assert [s for _, s in result] == pytest.approx([1.0, 0.8, 0.6, 0.0, -1.0], abs=1e-5)
    assert [i for i, _ in await loaded.knn(vec(e0=1), 2, space="raw")] == ["a", "b"]


async def test_each_space_has_its_own_vectors(loaded: ItemStore) -> None:
    enriched = await loaded.knn(vec(e2=1), 2, space="enriched")
    assert enriched[0] == ("a", pytest.approx(1.0, abs=1e-5))
    assert enriched[1] == ("c", pytest.approx(0.6, abs=1e-5))
    raw = await loaded.knn(vec(e2=1), 5, space="raw")
    assert all(s == pytest.approx(0.0, abs=1e-5) for _, s in raw)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (ItemFilters(categories_any=["sci-fi"]), ["a", "c"]),  # case-insensitive
        (ItemFilters(categories_any=["Comedy", "Horror"]), ["d", "e"]),
        (ItemFilters(categories_none=["DRAMA"]), ["a", "d", "e"]),
        (ItemFilters(attributes={"language": "fr"}), ["c"]),
        (ItemFilters(ranges={"year": (1990, None)}), ["b", "c", "e"]),  # "unknown" excluded
        (ItemFilters(ranges={"year": (1990, 2005)}), ["b", "c"]),
        (ItemFilters(ranges={"year": (None, 1990)}), ["a"]),
        (ItemFilters(categories_any=["drama"], ranges={"year": (2000, None)}), ["c"]),
        (ItemFilters(categories_any=["western"]), []),
    ],
)
async def test_filters(loaded: ItemStore, filters: ItemFilters, expected: list[str]) -> None:
    result = await loaded.knn(vec(e0=1), 10, space="raw", filters=filters)
    assert [i for i, _ in result] == expected
    # eligibility checks of given ids apply the same hard constraints
    assert await loaded.eligible_ids(["a", "b", "c", "d", "e", "zz"], filters) == set(expected)
    sims = await loaded.similarities(
        vec(e0=1), ["a", "b", "c", "d", "e", "zz"], space="raw", filters=filters
    )
    assert set(sims) == set(expected)
    # counting applies them too, and the exclusions
    assert await loaded.count_eligible(filters) == len(expected)
    assert await loaded.count_eligible(filters, exclude_ids=expected[:1]) == len(expected[1:])


async def test_exclude_ids(loaded: ItemStore) -> None:
    result = await loaded.knn(vec(e0=1), 3, space="raw", exclude_ids=["a", "c"])
    assert [i for i, _ in result] == ["b", "d", "e"]


async def test_unavailable_and_deleted_items_are_never_eligible(loaded: ItemStore) -> None:
    b2 = replace(CATALOG[1], version=2, change_id="b-c2", available=False)
    assert await loaded.apply([b2, Tombstone("c", 2, "c-c2")]) == {"b", "c"}
    assert [i for i, _ in await loaded.knn(vec(e0=1), 5, space="raw")] == ["a", "d", "e"]
    assert await loaded.eligible_ids(["a", "b", "c", "zz"]) == {"a"}
    assert await loaded.count() == 5
    assert await loaded.count(eligible_only=True) == 3
    assert await loaded.count_eligible() == 3
    assert await loaded.count_eligible(exclude_ids=["a", "c", "zz"]) == 2
    # the deleted row stays for audits, flagged
    (c,) = await loaded.get_many(["c"])
    assert c.deleted and c.version == 2 and c.title == "Title c" and not c.eligible
    assert await loaded.categories() == ["Comedy", "Horror", "Sci-Fi"]


async def test_versioned_writes(loaded: ItemStore) -> None:
    older = replace(CATALOG[0], version=0, title="stale")
    same = replace(CATALOG[0], title="same version, other text")
    assert await loaded.apply([older, same]) == set()
    (a,) = await loaded.get_many(["a"])
    assert a.title == "Title a" and a.version == 1

    newer = replace(CATALOG[0], version=3, change_id="a-c3", title="Alien", raw_embedding=vec(e7=1))
    assert await loaded.apply([newer]) == {"a"}
    (a,) = await loaded.get_many(["a"], with_vectors=True)
    assert (a.version, a.title, a.change_id) == (3, "Alien", "a-c3")
    assert a.raw_embedding is not None and float(a.raw_embedding @ vec(e7=1)) == pytest.approx(1.0)


async def test_version_bump_keeps_content_and_vectors(loaded: ItemStore) -> None:
    assert await loaded.apply([VersionBump("b", 1, "b-x")]) == set()  # not newer
    assert await loaded.apply([VersionBump("zz", 5, "zz-c5")]) == set()  # unknown item
    assert await loaded.apply([VersionBump("b", 4, "b-c4", available=False)]) == {"b"}
    (b,) = await loaded.get_many(["b"], with_vectors=True)
    assert (b.version, b.change_id, b.available, b.title) == (4, "b-c4", False, "Title b")
    assert b.enrichment_status is EnrichmentStatus.ENRICHED and b.raw_embedding is not None
    states = await loaded.states(["b", "zz"])
    assert list(states) == ["b"] and states["b"].version == 4 and states["b"].has_vectors
    assert states["b"].change_id == "b-c4"


async def test_delete_then_late_and_new_versions(store: ItemStore) -> None:
    # a delete may arrive before the item was ever stored: a tombstone row
    assert await store.apply([Tombstone("x", 5, "x-c5", occurred_at=T0)]) == {"x"}
    (x,) = await store.get_many(["x"])
    assert x.deleted and x.enrichment_status is EnrichmentStatus.DELETED and not x.eligible
    late = item("x", vec(e0=1), vec(e0=1), version=4)
    assert await store.apply([late]) == set()  # older than the delete: ignored
    assert await store.eligible_ids(["x"]) == set()
    revived = item("x", vec(e0=1), vec(e0=1), version=6, change_id="x-c6")
    assert await store.apply([revived]) == {"x"}
    assert await store.eligible_ids(["x"]) == {"x"}
    states = await store.states(["x"])
    assert states["x"].version == 6 and not states["x"].deleted


async def test_applying_the_same_writes_twice_changes_nothing(store: ItemStore) -> None:
    writes = [*CATALOG, Tombstone("d", 2, "d-c2"), VersionBump("a", 2, "a-c2")]
    assert await store.apply(writes) == {"a", "b", "c", "d", "e"}
    first = await store.get_many(["a", "b", "c", "d", "e"])
    assert await store.apply(writes) == set()
    again = await store.get_many(["a", "b", "c", "d", "e"])
    assert first == again
    assert [r.updated_at for r in first] == [r.updated_at for r in again]


async def test_a_record_without_vectors_is_refused(store: ItemStore) -> None:
    with pytest.raises(ValueError, match="raw_embedding"):
        await store.apply([replace(CATALOG[0], raw_embedding=None)])
    with pytest.raises(ValueError, match="shape"):
        await store.apply([replace(CATALOG[0], raw_embedding=np.ones(3, dtype=np.float32))])
    assert await store.count() == 0


async def test_get_many_vectors_and_missing_ids(loaded: ItemStore) -> None:
    rows = await loaded.get_many(["e", "zz", "a"])
    assert [r.item_id for r in rows] == ["e", "a"]
    assert rows[0].raw_embedding is None  # vectors only when asked
    assert rows[1].attributes == {"year": "1979", "language": "en"}
    assert rows[1].categories == ("Sci-Fi",) and rows[1].tags == ("space",)
    assert rows[1].prompt_version == "p1" and rows[1].embedding_dim == DIM
    vectors = await loaded.vectors(["a", "zz"], space="enriched")
    assert list(vectors) == ["a"] and float(vectors["a"] @ vec(e2=1)) == pytest.approx(1.0)


async def test_knn_returns_k_rows_even_when_k_exceeds_ef_search(store: ItemStore) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for i in range(80):
        v = rng.normal(size=DIM).astype(np.float32)
        v /= np.linalg.norm(v)
        category = "even" if i % 2 == 0 else "odd"
        rows.append(item(f"r{i:02d}", v, v, categories=(category,)))
    await store.apply(rows)
    query = rows[0].raw_embedding
    assert query is not None
    assert len(await store.knn(query, 50, space="raw")) == 50
    filtered = await store.knn(query, 35, space="raw", filters=ItemFilters(categories_any=["odd"]))
    assert len(filtered) == 35 and all(int(i[1:]) % 2 == 1 for i, _ in filtered)
    sims = [s for _, s in filtered]
    assert sims == sorted(sims, reverse=True)


HEADS = [[], ["e", "a", "c", "zz"], ["a", "b", "c", "d", "e"], ["d", "d", "zz"]]
SEARCH_FILTERS = [
    None,
    ItemFilters(categories_any=["sci-fi"]),
    ItemFilters(categories_none=["drama"], ranges={"year": (None, 2005)}),
    ItemFilters(categories_any=["western"]),
]


async def _separately(
    store: ItemStore,
    query: np.ndarray,
    k: int,
    filters: ItemFilters | None,
    exclude: list[str],
    head: list[str],
) -> tuple[list[tuple[str, float]], dict[str, float]]:
    near = await store.knn(query, k, space="raw", filters=filters, exclude_ids=exclude)
    return near, await store.similarities(query, head, space="raw", filters=filters)


async def test_knn_and_similarities_in_one_read_answer_as_two(loaded: ItemStore) -> None:
    """The merged statement gives exactly the two reads' answers: an empty head, excluded
    items (the search's only: a head item may be excluded from the search), unknown ids,
    repeats, filters that leave nothing, and after items were deleted or made unavailable
    between one request's reads and the next."""
    query = vec(e0=0.9, e1=0.3)
    for _ in range(2):
        for filters in SEARCH_FILTERS:
            for head in HEADS:
                for k, exclude in [(3, []), (5, ["a", "c"]), (0, []), (10, ["zz"])]:
                    merged = await loaded.knn_and_similarities(
                        query,
                        k,
                        space="raw",
                        filters=filters,
                        exclude_ids=exclude,
                        item_ids=head,
                    )
                    assert merged == await _separately(loaded, query, k, filters, exclude, head)
        b2 = replace(CATALOG[1], version=2, change_id="b-c2", available=False)
        await loaded.apply([b2, Tombstone("c", 2, "c-c2")])
    near, sims = await loaded.knn_and_similarities(
        query, 5, space="raw", item_ids=["a", "b", "c", "e"]
    )
    assert [i for i, _ in near] == ["a", "d", "e"] and set(sims) == {"a", "e"}


async def test_knn_and_similarities_past_ef_search(store: ItemStore) -> None:
    """k above the pool's ef_search (the statement raises it for itself): still k rows,
    and the given items' similarities beside them."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(80):
        v = rng.normal(size=DIM).astype(np.float32)
        rows.append(item(f"r{i:02d}", v / np.linalg.norm(v), v / np.linalg.norm(v)))
    await store.apply(rows)
    query = rows[0].raw_embedding
    assert query is not None
    head = [f"r{i:02d}" for i in range(0, 80, 7)]
    merged = await store.knn_and_similarities(
        query, 50, space="raw", exclude_ids=["r01"], item_ids=head
    )
    assert len(merged[0]) == 50 and set(merged[1]) == set(head)
    assert merged == await _separately(store, query, 50, None, ["r01"], head)


async def test_eligible_ids_each_answers_as_one_read_per_filter(loaded: ItemStore) -> None:
    """Eligibility and the soft preference's parts in one statement: each set is what
    ``eligible_ids`` gives for its filters, before and after deletions."""
    ids = ["a", "b", "c", "d", "e", "zz", "a"]
    sets: list[ItemFilters | None] = [
        None,
        ItemFilters(categories_any=["drama"]),
        ItemFilters(ranges={"year": (1990, 1999)}),
        ItemFilters(categories_any=["horror"]),
        ItemFilters(categories_any=["sci-fi"], categories_none=["drama"]),
        ItemFilters(attributes={"language": "fr"}, ranges={"year": (2000, None)}),
        ItemFilters(categories_any=["western"]),
    ]
    for _ in range(2):
        for n in range(len(sets)):
            chosen = sets[n:] + sets[:n]
            want = [await loaded.eligible_ids(ids, f) for f in chosen]
            assert await loaded.eligible_ids_each(ids, chosen) == want
        await loaded.apply(
            [Tombstone("b", 2, "b-c2"), VersionBump("d", 2, "d-c2", available=False)]
        )
    assert (await loaded.eligible_ids_each(ids, [None]))[0] == {"a", "c", "e"}
    assert await loaded.eligible_ids_each([], [None, sets[1]]) == [set(), set()]
    assert await loaded.eligible_ids_each(ids, []) == []
