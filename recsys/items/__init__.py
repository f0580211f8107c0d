"""The item store: versioned item rows with a raw-text and an enriched-text vector each.

``ItemStore`` is the port; ``PgItemStore`` (pgvector) and ``InMemoryItemStore`` (numpy)
implement it with the same contract.
"""

from recsys.items.memory import InMemoryItemStore
from recsys.items.model import (
    ItemFilters,
    ItemRecord,
    ItemState,
    ItemWrite,
    Space,
    Tombstone,
    VersionBump,
)
from recsys.items.store import ItemStore, Neighbours

__all__ = [
    "InMemoryItemStore",
    "ItemFilters",
    "ItemRecord",
    "ItemState",
    "ItemStore",
    "ItemWrite",
    "Neighbours",
    "Space",
    "Tombstone",
    "VersionBump",
]
