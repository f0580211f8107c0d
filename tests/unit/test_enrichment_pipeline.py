"""The enrichment pipeline's version, delete and unchanged logic, without I/O: the
in-memory item store, a fake embedder, no LLM (the LLM paths run against our HTTP
server in tests/integration/test_enrich_worker.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from recsys.enrichment import Enricher, EnrichmentPipeline, InMemoryEnrichmentCache
from recsys.enrichment.pipeline import latest_changes
from recsys.exceptions import ConfigurationError, DatabaseUnavailable
from recsys.items import InMemoryItemStore, ItemWrite
from recsys.records import CatalogChange, ChangeOp, EnrichmentStatus, LlmInvolvement


class FakeEmbedder:
    """Deterministic unit vectors from a text hash; records batch sizes."""

    name = "fake-embedder"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.batches: list[int] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        out = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
            v = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def change(item: str, version: int, text: str = "A film.", **fields: object) -> CatalogChange:
    return CatalogChange(
        item_id=item,
        version=version,
        change_id=f"{item}-v{version}",
        title=item,
        description=text,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def parts() -> tuple[EnrichmentPipeline, InMemoryItemStore, FakeEmbedder, list[LlmInvolvement]]:
    store, embedder = InMemoryItemStore(), FakeEmbedder()
    enricher = Enricher(None, InMemoryEnrichmentCache())
    pipeline = EnrichmentPipeline(store, embedder, enricher, batch_size=2, batch_wait_s=3600)
    return pipeline, store, embedder, []


async def test_versions_unchanged_content_and_deletes(
    parts: tuple[EnrichmentPipeline, InMemoryItemStore, FakeEmbedder, list[LlmInvolvement]],
) -> None:
    pipeline, store, embedder, logs = parts
    events = await pipeline.process([change("a", 1), change("b", 1, "Another.")], logs.append)
    assert [(e.item_id, e.enrichment_status) for e in events] == [
        ("a", EnrichmentStatus.LLM_OFF),
        ("b", EnrichmentStatus.LLM_OFF),
    ]
    assert [(r.decision, r.called, r.fallback_reason) for r in logs] == [
        ("no_endpoint", False, "no_endpoint")
    ] * 2
    (a,) = await store.get_many(["a"], with_vectors=True)
    assert a.raw_embedding is not None and a.enriched_embedding is not None
    assert np.array_equal(a.raw_embedding, a.enriched_embedding)  # raw text only
    assert a.summary is None and a.tags == () and a.embedding_model == "fake-embedder"
    calls = len(embedder.batches)

    # the same change again (a retry, or a replay after a crash before the commit):
    # nothing is written, the stored version is announced again
    (again,) = await pipeline.process([change("a", 1)], logs.append)
    assert (again.item_id, again.version, again.enrichment_status) == ("a", 1, "LLM_OFF")
    assert len(embedder.batches) == calls and len(logs) == 2
    # same content, newer version: the version moves, nothing is re-embedded
    (bump,) = await pipeline.process([change("a", 2, available=False)], logs.append)
    assert bump.enrichment_status is EnrichmentStatus.UNCHANGED and bump.version == 2
    assert bump.content_hash == a.content_hash and bump.embedding_model == "fake-embedder"
    assert len(embedder.batches) == calls and logs[-1].decision == "unchanged"
    assert await store.eligible_ids(["a"]) == set()  # now unavailable

    # a delete and a late, older upsert in one batch: the delete wins
    events = await pipeline.process(
        [change("b", 3, op=ChangeOp.DELETE), change("b", 2, "Late.")], logs.append
    )
    assert [(e.item_id, e.deleted, e.version) for e in events] == [("b", True, 3)]
    assert await pipeline.process([change("b", 2, "Later still.")], logs.append) == []
    (b,) = await store.get_many(["b"])
    assert b.deleted and b.description == "Another." and b.version == 3

    # changed content: embedded again
    (edit,) = await pipeline.process([change("a", 5, "A remastered film.")], logs.append)
    assert edit.enrichment_status is EnrichmentStatus.LLM_OFF and len(embedder.batches) > calls
    assert pipeline.stats.stale == 2  # the superseded and the late version
    assert pipeline.stats.reannounced == 1


async def test_embeddings_are_micro_batched_across_items(
    parts: tuple[EnrichmentPipeline, InMemoryItemStore, FakeEmbedder, list[LlmInvolvement]],
) -> None:
    pipeline, store, embedder, logs = parts
    await pipeline.process([change(f"i{n}", 1, f"Film {n}.") for n in range(5)], logs.append)
    assert embedder.batches == [2, 2, 1]  # size-bounded, the rest flushed (no hour-long wait)
    assert await store.count(eligible_only=True) == 5


class FlakyStore(InMemoryItemStore):
    """Fails the n-th apply once, like Postgres going away in the middle of a batch."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on, self.calls = fail_on, 0

    async def apply(self, writes: Sequence[ItemWrite]) -> set[str]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise DatabaseUnavailable("Postgres went away")
        return await super().apply(writes)


async def test_a_batch_retried_after_a_partial_write_announces_every_item() -> None:
    store, embedder = FlakyStore(fail_on=2), FakeEmbedder()
    pipeline = EnrichmentPipeline(
        store, embedder, Enricher(None, InMemoryEnrichmentCache()), batch_size=2, write_chunk=2
    )
    batch = [change(f"i{n}", 1, f"Film {n}.") for n in range(5)]
    with pytest.raises(DatabaseUnavailable):
        await pipeline.process(batch, lambda r: None)
    assert 0 < await store.count() < 5  # some chunks made it, one did not
    events = await pipeline.process(batch, lambda r: None)  # the consumer loop retries
    assert sorted(e.item_id for e in events) == [f"i{n}" for n in range(5)]
    assert await store.count(eligible_only=True) == 5


def test_latest_change_per_item() -> None:
    latest = latest_changes([change("a", 2), change("a", 1), change("b", 1), change("a", 2, "x")])
    assert latest["a"].version == 2 and latest["a"].description == "x"
    assert latest["b"].version == 1


async def test_an_embedder_of_another_dimension_is_refused() -> None:
    pipeline = EnrichmentPipeline(
        InMemoryItemStore(384), FakeEmbedder(768), Enricher(None, InMemoryEnrichmentCache())
    )
    with pytest.raises(ConfigurationError, match="768-d vectors but the item store holds 384-d"):
        await pipeline.check()
