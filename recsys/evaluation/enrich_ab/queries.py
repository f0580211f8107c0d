"""The fixed, versioned query set of the enrichment A/B, built from MovieLens itself.

Two kinds of query, both judged by the user tags of ``tags.csv``:

* **tag** — one query per eligible tag, phrased in plain language ("something
  atmospheric"); relevant = every catalog movie that carries the tag.
* **conversation** — a short exchange of a user who applied the tag: their first liked
  titles (earliest ratings ≥ 4.0 of movies *not* carrying the tag), then a request for
  the tag ("I really liked Heat (1995) and Alien (1979). Can you suggest something
  heist?"); relevant = the movies carrying the tag minus those the user named, which
  are also excluded from retrieval (like consumed items in serving).

The tags are **held out of the item text**: both arms embed the title and the genres
(the enrichment reads the same text), never ``tags.csv``, so a query is not a lookup.
A tag is eligible when, normalised (lower case, whitespace collapsed), it is carried
by at least ``min_items`` catalog movies, is not a meta or opinion tag
(:data:`META_TAGS`: "in netflix queue", "overrated", …), is not a genre name (a genre
is in both texts: a lookup), and occurs in the title of none of its movies (a lookup
by title).

The set is frozen by :data:`QUERY_SET_VERSION` (bumped whenever these rules change) and
a seed (phrasing and sampling), and identified by a fingerprint — a hash of the version,
seed, catalog and every query — that the report prints, so two runs can show they
evaluated the same queries.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from recsys.movielens import POSITIVE, MovieLens, Rating, TagRow
from recsys.records import CatalogChange

__all__ = [
    "DEFAULT_SEED",
    "META_TAGS",
    "QUERY_SET_VERSION",
    "AbQuery",
    "QuerySet",
    "QuerySetConfig",
    "build_query_set",
    "load_query_set",
    "normalise_tag_text",
    "spoken_title",
]

#: Bump when the construction rules change (the fingerprint changes with it anyway).
QUERY_SET_VERSION = "ab-queries-v1"
DEFAULT_SEED = 7

QueryKind = Literal["tag", "conversation"]
KINDS: tuple[QueryKind, ...] = ("tag", "conversation")

#: Tags that say nothing about a movie's content (lists, opinions, quality verdicts).
META_TAGS = frozenset(
    {
        "in netflix queue",
        "imdb top 250",
        "bad",
        "boring",
        "overrated",
        "awesome",
        "masterpiece",
        "predictable",
        "plot holes",
        "bad plot",
        "great acting",
        "interesting",
        "movies",
        "remade",
        "remake",
        "sequel",
        "classic",
        "unique",
        "fun",
    }
)

_TAG_PHRASES = (
    "{tag}",
    "something {tag}",
    "{tag} movies",
    "I'd like to watch something {tag}",
    "recommend me a film: {tag}",
)
_ASK_PHRASES = (
    "Can you suggest something {tag}?",
    "Now I'm in the mood for something {tag}.",
    "Anything {tag} you would recommend?",
)


def normalise_tag_text(text: str) -> str:
    """Lower case, whitespace collapsed (``"Dark  Comedy "`` → ``"dark comedy"``)."""
    return " ".join(text.lower().split())


def _words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


@dataclass(frozen=True)
class AbQuery:
    """One query with its relevant items."""

    query_id: str
    kind: QueryKind
    text: str
    tag: str
    relevant: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    turns: tuple[str, ...] = ()
    user_id: str | None = None


@dataclass(frozen=True)
class QuerySetConfig:
    """How the set is drawn (part of its identity)."""

    seed: int = DEFAULT_SEED
    max_tag_queries: int = 200
    max_conversations: int = 100
    min_items: int = 3
    liked_titles: int = 3
    conversations_per_user: int = 5
    catalog: Literal["tagged", "all"] = "tagged"
    max_items: int | None = None


@dataclass(frozen=True)
class QuerySet:
    """The frozen query set and the catalog it retrieves from."""

    version: str
    config: QuerySetConfig
    items: tuple[CatalogChange, ...]
    queries: tuple[AbQuery, ...]
    eligible_tags: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over version, config, catalog ids/texts and queries."""
        data = {
            "version": self.version,
            "config": asdict(self.config),
            "items": [[c.item_id, c.title, list(c.categories)] for c in self.items],
            "queries": [asdict(q) for q in self.queries],
        }
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def by_kind(self, kind: QueryKind) -> list[AbQuery]:
        """The queries of one kind, in set order."""
        return [q for q in self.queries if q.kind == kind]

    def describe(self) -> dict[str, object]:
        """Identity and size, for reports."""
        return {
            "version": self.version,
            "seed": self.config.seed,
            "fingerprint": self.fingerprint,
            "catalog": self.config.catalog,
            "catalog_items": len(self.items),
            "eligible_tags": self.eligible_tags,
            "queries": {kind: len(self.by_kind(kind)) for kind in KINDS},
            "notes": list(self.notes),
        }

    def to_json(self) -> dict[str, object]:
        """The queries as JSON (to freeze a copy beside a report)."""
        return {
            **self.describe(),
            "config": asdict(self.config),
            "query_list": [asdict(q) for q in self.queries],
        }


def _eligible_tags(
    tagged: Mapping[str, set[str]], items: Mapping[str, CatalogChange], min_items: int
) -> dict[str, set[str]]:
    genres = {_words(g) for c in items.values() for g in c.categories}
    out: dict[str, set[str]] = {}
    for tag, movies in tagged.items():
        movies = movies & items.keys()
        if len(movies) < min_items or tag in META_TAGS or _words(tag) in genres:
            continue
        needle = _words(tag)
        if needle.strip() == "" or any(needle in _words(items[m].title) for m in movies):
            continue
        out[tag] = movies
    return out


def _liked_titles(
    ratings: Sequence[Rating], avoid: set[str], titles: Mapping[str, str], n: int
) -> list[str]:
    liked: list[str] = []
    for r in ratings:  # time order
        if r.rating >= POSITIVE and r.item_id not in avoid and r.item_id in titles:
            if r.item_id not in liked:
                liked.append(r.item_id)
            if len(liked) == n:
                break
    return liked


_ARTICLE = re.compile(r"^(.+), (The|A|An) (\(\d{4}\))$")


def spoken_title(title: str) -> str:
    """``"Big Lebowski, The (1998)"`` → ``"The Big Lebowski (1998)"`` (how people say it)."""
    match = _ARTICLE.match(title.strip())
    return f"{match.group(2)} {match.group(1)} {match.group(3)}" if match else title.strip()


def _titles(titles: Sequence[str]) -> str:
    titles = [spoken_title(t) for t in titles]
    return titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]


def build_query_set(
    movies: Iterable[CatalogChange],
    tag_rows: Iterable[TagRow],
    ratings: Iterable[Rating],
    config: QuerySetConfig | None = None,
) -> QuerySet:
    """Draw the query set from the three MovieLens tables (see the module docstring)."""
    config = config or QuerySetConfig()
    rng = random.Random(config.seed)
    rows = list(tag_rows)
    tagged: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        tagged[normalise_tag_text(row.tag)].add(row.item_id)
    carrying = {row.item_id for row in rows}
    # the item text never holds the tags: title + genres (+ year) only
    catalog = [m.model_copy(update={"description": ""}) for m in movies]
    titles = {m.item_id: m.title for m in catalog}
    if config.catalog == "tagged":
        catalog = [m for m in catalog if m.item_id in carrying]
    catalog.sort(key=lambda m: int(m.item_id) if m.item_id.isdigit() else m.item_id)
    items = {m.item_id: m for m in catalog}
    eligible = _eligible_tags(tagged, items, config.min_items)

    tag_names = sorted(eligible)
    if len(tag_names) > config.max_tag_queries:
        tag_names = sorted(rng.sample(tag_names, config.max_tag_queries))
    queries: list[AbQuery] = []
    for tag in tag_names:
        queries.append(
            AbQuery(
                query_id=f"tag:{tag}",
                kind="tag",
                text=rng.choice(_TAG_PHRASES).format(tag=tag),
                tag=tag,
                relevant=tuple(sorted(eligible[tag])),
            )
        )

    by_user: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_user[r.user_id].append(r)
    for user_ratings in by_user.values():
        user_ratings.sort(key=lambda r: (r.ts, r.item_id))
    user_tags: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        tag = normalise_tag_text(row.tag)
        if tag in eligible:
            user_tags[row.user_id].add(tag)
    conversations: list[AbQuery] = []
    for user in sorted(user_tags, key=lambda u: int(u) if u.isdigit() else u):
        options = sorted(user_tags[user])
        rng.shuffle(options)
        made = 0
        for tag in options:
            if made == config.conversations_per_user:
                break
            liked = _liked_titles(by_user.get(user, []), eligible[tag], titles, config.liked_titles)
            relevant = eligible[tag] - set(liked)
            if len(liked) < 2 or not relevant:
                continue
            turns = (
                f"I really liked {_titles([titles[i] for i in liked])}.",
                rng.choice(_ASK_PHRASES).format(tag=tag),
            )
            conversations.append(
                AbQuery(
                    query_id=f"conversation:{user}:{tag}",
                    kind="conversation",
                    text=" ".join(turns),
                    tag=tag,
                    relevant=tuple(sorted(relevant)),
                    exclude=tuple(i for i in liked if i in items),
                    turns=turns,
                    user_id=user,
                )
            )
            made += 1
    if len(conversations) > config.max_conversations:
        picked = set(rng.sample(range(len(conversations)), config.max_conversations))
        conversations = [c for i, c in enumerate(conversations) if i in picked]
    notes = []
    chosen = queries + conversations
    if config.max_items is not None and len(catalog) > config.max_items:
        # a smaller catalog for quick runs: every item a query needs, then seeded distractors
        needed = {i for q in chosen for i in (*q.relevant, *q.exclude)}
        others = [m.item_id for m in catalog if m.item_id not in needed]
        room = max(0, config.max_items - len(needed))
        keep = needed | set(rng.sample(others, min(room, len(others))))
        catalog = [m for m in catalog if m.item_id in keep]
        notes.append(
            f"catalog cut to {len(catalog)} items: those the queries need plus seeded distractors"
        )
    if not queries:
        notes.append(f"no tag is carried by at least {config.min_items} catalog movies")
    return QuerySet(
        version=QUERY_SET_VERSION,
        config=config,
        items=tuple(catalog),
        queries=tuple(chosen),
        eligible_tags=len(eligible),
        notes=tuple(notes),
    )


def load_query_set(movielens: MovieLens, config: QuerySetConfig | None = None) -> QuerySet:
    """The query set of a MovieLens folder."""
    return build_query_set(movielens.catalog(), movielens.tag_rows(), movielens.ratings(), config)
