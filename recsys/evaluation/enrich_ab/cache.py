"""An enrichment cache in a JSON-lines file, so a re-run of the A/B costs no LLM call.

The A/B runs without Postgres, yet enriching 1,572 movies through a paid endpoint is
worth doing once. This implements the :class:`~recsys.enrichment.cache.EnrichmentCache`
port with the same key — (content hash, prompt version, model) — so another prompt or
model misses on purpose. Each validated answer is appended as one line and flushed; a
damaged line (an interrupted write) is skipped on load, and the enricher re-validates
every hit anyway.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from recsys.enrichment.cache import CacheKey

__all__ = ["JsonlEnrichmentCache"]

log = logging.getLogger(__name__)


class JsonlEnrichmentCache:
    """Validated enrichments in ``path``, loaded at start, appended on ``put``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[CacheKey, dict[str, Any]] = {}
        self.skipped_lines = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8") as f:
                for line in f:
                    self._load(line)

    def _load(self, line: str) -> None:
        try:
            row = json.loads(line)
            key = CacheKey(row["content_hash"], row["prompt_version"], row["llm_model"])
            value = row["enrichment"]
        except (json.JSONDecodeError, KeyError, TypeError):
            self.skipped_lines += 1
            return
        if isinstance(value, dict):
            self._entries.setdefault(key, value)

    async def get(self, key: CacheKey) -> dict[str, Any] | None:
        """The cached enrichment, or None."""
        return self._entries.get(key)

    async def put(
        self,
        key: CacheKey,
        value: dict[str, Any],
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
    ) -> None:
        """Remember a validated enrichment (first writer wins) and append it to the file."""
        if key in self._entries:
            return
        self._entries[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {
            "content_hash": key.content_hash,
            "prompt_version": key.prompt_version,
            "llm_model": key.llm_model,
            "enrichment": value,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost_usd,
        }
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._entries)
