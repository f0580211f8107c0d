"""The texts that get embedded, and the content hash that decides whether to redo work.

The embedded texts are cleaned first (:func:`recsys.serving.untrusted.embeddable`):
encoded payloads and instruction sentences the injection guard flags are dropped and
repeated keywords capped, so neither an injection nor keyword stuffing moves an item's
vector towards a query (issue 14); ordinary text is embedded as written.

The content hash covers what an upstream change can alter in an item's text — title,
categories, description, attributes — after normalisation (Unicode NFC, whitespace
collapsed, categories and attributes in a canonical order), so re-sending the same
content with cosmetic whitespace differences costs nothing. Availability is not
content: toggling it never re-embeds.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence

from recsys.records import CatalogChange
from recsys.serving.untrusted import embeddable

__all__ = ["content_hash", "enriched_text", "normalise_text", "raw_text"]


def normalise_text(text: str) -> str:
    """NFC, whitespace collapsed to single spaces, stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(change: CatalogChange) -> str:
    """SHA-256 (hex) of the normalised title, categories, description and attributes."""
    canonical = {
        "title": normalise_text(change.title),
        "categories": sorted({normalise_text(c) for c in change.categories} - {""}),
        "description": normalise_text(change.description),
        "attributes": {
            normalise_text(k): normalise_text(v) for k, v in sorted(change.attributes.items())
        },
    }
    data = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def _join(parts: Sequence[str]) -> str:
    out = []
    for part in parts:
        part = normalise_text(part)
        if part:
            out.append(part if part[-1] in ".!?" else part + ".")
    return " ".join(out)


def raw_text(title: str, categories: Sequence[str], description: str) -> str:
    """The raw text embedding: title + categories + description (the baseline), cleaned."""
    return _join([embeddable(title), ", ".join(categories), embeddable(description)])


def enriched_text(
    title: str,
    categories: Sequence[str],
    summary: str,
    themes: Sequence[str],
    mood: str | None,
    audience: str | None,
    tags: Sequence[str],
) -> str:
    """The enriched-text embedding: title, categories and the LLM's structured reading."""
    parts = [embeddable(title), ", ".join(categories), embeddable(summary)]
    if themes:
        parts.append("Themes: " + ", ".join(themes))
    if mood:
        parts.append(f"Mood: {mood}")
    if audience:
        parts.append(f"Audience: {audience}")
    if tags:
        parts.append("Tags: " + ", ".join(tags))
    return _join(parts)
