"""Loader for the MovieLens ``ml-latest-small`` format (movies, ratings, tags).

Turns the data set into what streamrec consumes — catalog changes and time-ordered
user events — and provides the temporal split used by the quality benchmarks: for each
user, the last 20 % of their positive ratings (≥ 4.0) by time are held out. The data is
read from a path setting, never copied into the project.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from recsys.exceptions import DataNotFound
from recsys.records import CatalogChange, EventType, UserEvent

__all__ = ["MovieLens", "Rating", "TagRow", "TemporalSplit", "temporal_split"]

_YEAR = re.compile(r"\((\d{4})\)\s*$")
POSITIVE = 4.0


@dataclass(frozen=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    ts: int


@dataclass(frozen=True)
class TagRow:
    """One user tag on one movie, as in ``tags.csv``."""

    user_id: str
    item_id: str
    tag: str
    ts: int


class MovieLens:
    """Reads ``movies.csv``, ``ratings.csv`` and ``tags.csv`` from a folder."""

    FILES = ("movies.csv", "ratings.csv", "tags.csv")

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        missing = [f for f in self.FILES if not (self.path / f).is_file()]
        if missing:
            raise DataNotFound(
                f"MovieLens files {missing} not found in {self.path.resolve()}; "
                "set STREAMREC_MOVIELENS_PATH to the ml-latest-small folder"
            )

    @staticmethod
    def available(path: Path) -> bool:
        """True when the folder holds the three files."""
        return all((Path(path) / f).is_file() for f in MovieLens.FILES)

    def _rows(self, name: str) -> Iterator[dict[str, str]]:
        with (self.path / name).open(newline="", encoding="utf-8") as f:
            yield from csv.DictReader(f)

    def tags(self) -> dict[str, list[str]]:
        """Distinct user tags per movie, in first-seen order."""
        out: dict[str, list[str]] = defaultdict(list)
        for row in self._rows("tags.csv"):
            tag = row["tag"].strip()
            if tag and tag.lower() not in (t.lower() for t in out[row["movieId"]]):
                out[row["movieId"]].append(tag)
        return out

    def tag_rows(self) -> list[TagRow]:
        """Every row of ``tags.csv`` (who tagged what, when), in file order."""
        return [
            TagRow(r["userId"], r["movieId"], r["tag"].strip(), int(r["timestamp"]))
            for r in self._rows("tags.csv")
            if r["tag"].strip()
        ]

    def catalog(self) -> list[CatalogChange]:
        """One UPSERT per movie: title, genres as categories, tags as description."""
        tags = self.tags()
        out = []
        for row in self._rows("movies.csv"):
            title = row["title"].strip()
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            attributes = {}
            match = _YEAR.search(title)
            if match:
                attributes["year"] = match.group(1)
            movie_tags = tags.get(row["movieId"], [])
            description = (
                ("Tagged by viewers: " + ", ".join(movie_tags[:20]) + ".") if movie_tags else ""
            )
            out.append(
                CatalogChange(
                    change_id=f"ml-movie-{row['movieId']}-v1",
                    item_id=row["movieId"],
                    version=1,
                    title=title,
                    categories=genres,
                    description=description,
                    attributes=attributes,
                    occurred_at=datetime(1995, 1, 1, tzinfo=UTC),
                )
            )
        return out

    def ratings(self) -> list[Rating]:
        """All ratings, ordered by time (then user, item for ties)."""
        out = [
            Rating(r["userId"], r["movieId"], float(r["rating"]), int(r["timestamp"]))
            for r in self._rows("ratings.csv")
        ]
        out.sort(key=lambda r: (r.ts, r.user_id, r.item_id))
        return out

    def events(self, ratings: list[Rating] | None = None) -> Iterator[UserEvent]:
        """Ratings as time-ordered RATING events with deterministic event ids."""
        for r in ratings if ratings is not None else self.ratings():
            yield UserEvent(
                event_id=f"ml-{r.user_id}-{r.item_id}-{r.ts}",
                user_id=r.user_id,
                event_type=EventType.RATING,
                item_id=r.item_id,
                rating=r.rating,
                occurred_at=datetime.fromtimestamp(r.ts, tz=UTC),
            )


@dataclass(frozen=True)
class TemporalSplit:
    """Per-user temporal split of positive ratings."""

    train: list[Rating]  # every rating before the user's cut (positives and negatives)
    test: dict[str, list[str]]  # user → held-out positive items, in time order
    train_positives: dict[str, list[str]]  # user → training positives, in time order


def temporal_split(
    ratings: list[Rating], holdout: float = 0.2, positive: float = POSITIVE
) -> TemporalSplit:
    """Hold out the last ``holdout`` share of each user's positives (at least one).

    A user's ratings at or after the first held-out positive's time leave training too,
    so nothing from the user's future leaks into the model.
    """
    by_user: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_user[r.user_id].append(r)
    train: list[Rating] = []
    test: dict[str, list[str]] = {}
    train_pos: dict[str, list[str]] = {}
    for user, rows in by_user.items():
        rows.sort(key=lambda r: (r.ts, r.item_id))
        positives = [r for r in rows if r.rating >= positive]
        n_test = max(1, round(len(positives) * holdout)) if len(positives) >= 2 else 0
        if n_test == 0:
            train.extend(rows)
            train_pos[user] = [r.item_id for r in positives]
            continue
        held = positives[-n_test:]
        cut = held[0].ts
        first_held_index = rows.index(held[0])
        kept = [r for i, r in enumerate(rows) if i < first_held_index and r.ts <= cut]
        train.extend(kept)
        test[user] = [r.item_id for r in held]
        train_pos[user] = [r.item_id for r in kept if r.rating >= positive]
    train.sort(key=lambda r: (r.ts, r.user_id, r.item_id))
    return TemporalSplit(train=train, test=test, train_positives=train_pos)
