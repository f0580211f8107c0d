"""The tag taxonomy enrichment may use: a built-in default or the ``tag_taxonomy`` setting.

Tags are lower-case, words joined by hyphens (``sci-fi``, ``coming-of-age``). The LLM
is given the list (as the schema's enum) and every answer is validated against it, so
no tag outside the taxonomy ever reaches the item table.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["DEFAULT_TAGS", "Taxonomy", "normalise_tag"]

#: Genres (MovieLens and the synthetic catalog), moods and common themes.
DEFAULT_TAGS: tuple[str, ...] = (
    # genres
    "action",
    "adventure",
    "animation",
    "children",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "film-noir",
    "horror",
    "musical",
    "mystery",
    "romance",
    "sci-fi",
    "thriller",
    "war",
    "western",
    # moods
    "uplifting",
    "dark",
    "funny",
    "tense",
    "cozy",
    "thoughtful",
    "exciting",
    "romantic",
    "heartwarming",
    "suspenseful",
    "scary",
    "quirky",
    # themes
    "space",
    "time-travel",
    "artificial-intelligence",
    "heist",
    "conspiracy",
    "revenge",
    "survival",
    "friendship",
    "coming-of-age",
    "grief",
    "family-secrets",
    "magic",
    "dragons",
    "wizards",
    "wildlife",
    "climate",
    "exploration",
    "haunted-house",
    "road-trip",
    "martial-arts",
    "true-story",
    "small-town",
    "detective",
)


def normalise_tag(tag: str) -> str:
    """``Sci Fi`` / ``sci_fi`` / `` SCI-FI `` → ``sci-fi``."""
    return "-".join(re.findall(r"[a-z0-9]+", tag.lower()))


class Taxonomy:
    """An ordered set of allowed tags."""

    def __init__(self, tags: Iterable[str] | None = None) -> None:
        chosen = DEFAULT_TAGS if tags is None else tuple(tags)
        seen: dict[str, None] = {}
        for tag in chosen:
            norm = normalise_tag(tag)
            if norm:
                seen.setdefault(norm, None)
        if not seen:
            raise ValueError("the tag taxonomy is empty")
        self.tags: tuple[str, ...] = tuple(seen)

    @classmethod
    def from_setting(cls, value: Iterable[str] | None) -> Taxonomy:
        """From ``Settings.tag_taxonomy`` (None = the built-in default)."""
        return cls(value)

    def __contains__(self, tag: object) -> bool:
        return isinstance(tag, str) and normalise_tag(tag) in self.tags

    def __iter__(self) -> Iterator[str]:
        return iter(self.tags)

    def __len__(self) -> int:
        return len(self.tags)

    def __repr__(self) -> str:
        return f"Taxonomy({len(self.tags)} tags)"
