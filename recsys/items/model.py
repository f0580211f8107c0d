"""The rows of the item store and the writes that change them.

Three kinds of write, all versioned (a write applies only when its version is newer
than the stored one, so replays and out-of-order arrivals change nothing):

* :class:`ItemRecord` — a full item version: text, enrichment, both vectors, provenance;
* :class:`VersionBump` — same content under a newer version (availability may change);
* :class:`Tombstone` — a delete: the row stays for audits and replays but is ineligible.

An item is *eligible* (may be recommended) when it is not deleted, is available and
has vectors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np

from recsys.records import EnrichmentStatus

__all__ = [
    "NUMERIC_PATTERN",
    "SPACES",
    "ItemFilters",
    "ItemRecord",
    "ItemState",
    "ItemWrite",
    "Space",
    "Tombstone",
    "VersionBump",
    "category_key",
    "check_record",
]

Space = Literal["raw", "enriched"]
#: Vector spaces of an item: the raw-text embedding and the enriched-text embedding.
SPACES: tuple[Space, ...] = ("raw", "enriched")


def category_key(category: str) -> str:
    """Categories compare case- and space-insensitively (``Sci-Fi`` = ``sci-fi ``)."""
    return " ".join(category.lower().split())


@dataclass(frozen=True)
class ItemRecord:
    """One item version as stored, with its provenance."""

    item_id: str
    version: int
    change_id: str
    content_hash: str
    title: str = ""
    categories: tuple[str, ...] = ()
    description: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    available: bool = True
    deleted: bool = False
    summary: str | None = None
    themes: tuple[str, ...] = ()
    mood: str | None = None
    audience: str | None = None
    tags: tuple[str, ...] = ()
    raw_embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    enriched_embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    embedding_model: str | None = None
    embedding_dim: int | None = None
    prompt_version: str | None = None
    llm_model: str | None = None
    enrichment_status: EnrichmentStatus = EnrichmentStatus.LLM_OFF
    enrichment_error: str | None = None
    enriched_at: datetime | None = None
    occurred_at: datetime | None = None
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def eligible(self) -> bool:
        """Not deleted, available, and embedded (stores refuse a record without vectors, so
        a row has an embedding model exactly when it has both vectors)."""
        return not self.deleted and self.available and self.embedding_model is not None

    def vector(self, space: Space) -> np.ndarray | None:
        """The vector of ``space``."""
        return self.raw_embedding if space == "raw" else self.enriched_embedding


@dataclass(frozen=True)
class VersionBump:
    """A newer version whose content hash equals the stored one: nothing to re-embed."""

    item_id: str
    version: int
    change_id: str
    available: bool = True
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class Tombstone:
    """A delete at ``version``: the item becomes ineligible at once; its row stays."""

    item_id: str
    version: int
    change_id: str
    occurred_at: datetime | None = None


ItemWrite = ItemRecord | VersionBump | Tombstone


@dataclass(frozen=True)
class ItemState:
    """What the enrichment pipeline needs to know about a stored item."""

    version: int
    content_hash: str
    deleted: bool
    embedding_model: str | None
    has_vectors: bool
    change_id: str = ""


@dataclass(frozen=True)
class ItemFilters:
    """Restrictions for a kNN query (all must hold).

    Attributes:
        categories_any: at least one of these categories.
        categories_none: none of these categories.
        attributes: attribute equals value (exact strings).
        ranges: numeric attribute within ``(low, high)``, inclusive, either end open
            (None); items whose attribute is missing or not a number are excluded.
    """

    categories_any: Sequence[str] = ()
    categories_none: Sequence[str] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def matches(self, item: ItemRecord) -> bool:
        """Reference semantics (the in-memory store uses it; SQL mirrors it)."""
        keys = {category_key(c) for c in item.categories}
        if self.categories_any and not keys & {category_key(c) for c in self.categories_any}:
            return False
        if keys & {category_key(c) for c in self.categories_none}:
            return False
        for name, value in self.attributes.items():
            if item.attributes.get(name) != value:
                return False
        for name, (low, high) in self.ranges.items():
            number = _number(item.attributes.get(name))
            if number is None:
                return False
            if low is not None and number < low:
                return False
            if high is not None and number > high:
                return False
        return True


def check_record(record: ItemRecord, dim: int) -> None:
    """A stored version needs both vectors, of the store's dimension, and their model.

    Raises:
        ValueError: a vector or the embedding model is missing, or a dimension differs.
    """
    if record.embedding_model is None:
        raise ValueError(f"item {record.item_id}: no embedding model recorded")
    for name in ("raw_embedding", "enriched_embedding"):
        vec = getattr(record, name)
        if vec is None:
            raise ValueError(f"item {record.item_id}: {name} is missing")
        if np.shape(vec) != (dim,):
            raise ValueError(
                f"item {record.item_id}: {name} has shape {np.shape(vec)}, not ({dim},)"
            )


#: What counts as a number in an attribute (the SQL filter uses the same pattern).
NUMERIC_PATTERN = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
_NUMERIC = re.compile(NUMERIC_PATTERN)


def _number(text: str | None) -> float | None:
    if text is None or not _NUMERIC.match(text):
        return None
    return float(text)
