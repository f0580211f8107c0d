"""The ``catalog.enriched`` event of a stored item version."""

from __future__ import annotations

from datetime import datetime

from recsys.items import ItemRecord
from recsys.records import EnrichmentStatus, ItemEnriched, utcnow

__all__ = ["item_event"]


def item_event(
    row: ItemRecord, status: EnrichmentStatus | None = None, *, at: datetime | None = None
) -> ItemEnriched:
    """The event announcing ``row``: its version, provenance and tags.

    ``status`` overrides the row's (``UNCHANGED`` for a version bump); a deleted row is
    announced as ``DELETED``.
    """
    if status is None:
        status = EnrichmentStatus.DELETED if row.deleted else row.enrichment_status
    return ItemEnriched(
        item_id=row.item_id,
        version=row.version,
        change_id=row.change_id,
        deleted=row.deleted,
        content_hash=row.content_hash,
        enrichment_status=status,
        embedding_model=row.embedding_model or "",
        embedding_dim=row.embedding_dim or 0,
        prompt_version=row.prompt_version,
        llm_model=row.llm_model,
        tags=list(row.tags),
        enriched_at=at or row.enriched_at or utcnow(),
    )
