"""A synthetic, seeded workload: catalog, users with latent tastes, sessions, queries.

Used by ``make demo`` and by tests that need realistic traffic without MovieLens.
Shapes that matter for a recommender are built in: Zipf-shaped item popularity,
per-user taste over categories (Dirichlet), Zipf-shaped user activity (so some users
are warm, most are cold), sessions separated by idle gaps, a funnel
view → click → cart → purchase, ratings that follow taste, and natural-language
queries that name a category, a mood and sometimes a constraint.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from recsys.records import CatalogChange, EventType, RecRequest, UserEvent, utcnow

__all__ = ["CATEGORIES", "SyntheticUser", "SyntheticWorkload", "WorkloadConfig"]

CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    # category: (title words, description themes)
    "sci-fi": (
        ["Star", "Orbit", "Quantum", "Nova", "Signal", "Android"],
        ["space travel", "artificial minds", "first contact", "time loops"],
    ),
    "comedy": (
        ["Wedding", "Roommates", "Holiday", "Chaos", "Neighbours", "Prank"],
        ["family mishaps", "awkward romance", "office life", "road trips"],
    ),
    "drama": (
        ["River", "Letters", "Winter", "Silence", "Harbour", "Promise"],
        ["grief", "coming of age", "family secrets", "second chances"],
    ),
    "thriller": (
        ["Shadow", "Cipher", "Witness", "Vault", "Trap", "Night"],
        ["conspiracy", "a heist", "a manhunt", "double agents"],
    ),
    "horror": (
        ["Cellar", "Hollow", "Ritual", "Fog", "Doll", "Attic"],
        ["haunted houses", "cursed objects", "isolation", "folk legends"],
    ),
    "romance": (
        ["Paris", "Summer", "Dance", "Letters", "Garden", "Kiss"],
        ["long-distance love", "rivals to lovers", "a second chance", "a summer fling"],
    ),
    "documentary": (
        ["Planet", "Ocean", "Makers", "Frontier", "Voices", "Atlas"],
        ["wildlife", "climate", "craftspeople", "exploration"],
    ),
    "animation": (
        ["Dragon", "Robot", "Forest", "Kingdom", "Bubble", "Comet"],
        ["friendship", "magic", "a quest", "talking animals"],
    ),
    "action": (
        ["Strike", "Velocity", "Iron", "Fury", "Edge", "Outpost"],
        ["car chases", "martial arts", "rescue missions", "mercenaries"],
    ),
    "fantasy": (
        ["Crown", "Sword", "Oracle", "Realm", "Ember", "Rune"],
        ["ancient prophecies", "dragons", "lost kingdoms", "wizards"],
    ),
    "mystery": (
        ["Clue", "Manor", "Alibi", "Ledger", "Lantern", "Key"],
        ["a locked room", "small-town secrets", "an amateur sleuth", "a missing heir"],
    ),
    "family": (
        ["Puppy", "Treehouse", "Camp", "Grandpa", "Picnic", "Kite"],
        ["siblings", "pets", "summer camp", "school days"],
    ),
}

MOODS = ["uplifting", "dark", "funny", "tense", "cozy", "thoughtful", "exciting", "romantic"]
AUDIENCES = ["kids", "teens", "adults", "families"]
LANGUAGES = ["en", "en", "en", "fr", "es", "de", "ja"]

QUERY_TEMPLATES = [
    "something {mood} about {theme}",
    "{mood} {category} for tonight",
    "a {category} film with {theme}, nothing too long",
    "I want a {mood} {category} from the {decade}s",
    "recommend me {category} like the ones about {theme}",
    "{category} for {audience}, {mood} please",
    "no horror, just a {mood} {category}",
]


@dataclass(frozen=True)
class WorkloadConfig:
    """Size and shape of the synthetic workload."""

    n_items: int = 500
    n_users: int = 300
    sessions_per_active_user: int = 4
    popularity_zipf_a: float = 1.1
    activity_zipf_a: float = 1.3
    taste_concentration: float = 0.35
    session_gap: timedelta = timedelta(hours=2)
    query_rate: float = 0.15
    seed: int = 7


@dataclass
class SyntheticUser:
    """A user's latent taste and activity level (ground truth of the generator)."""

    user_id: str
    taste: dict[str, float]
    activity: int
    consumed: set[str] = field(default_factory=set)


class SyntheticWorkload:
    """Deterministic generator of catalog changes, user events and requests."""

    def __init__(self, config: WorkloadConfig | None = None, start: datetime | None = None) -> None:
        self.config = config or WorkloadConfig()
        self.rng = random.Random(self.config.seed)
        self.np_rng = np.random.default_rng(self.config.seed)
        self.start = start or utcnow() - timedelta(days=7)
        self.categories = list(CATEGORIES)
        self.items = self._make_items()
        ranks = np.arange(1, len(self.items) + 1, dtype=float)
        weights = 1.0 / ranks**self.config.popularity_zipf_a
        self.popularity = weights / weights.sum()
        self.users = self._make_users()

    # ---- catalog ------------------------------------------------------------------------
    def _make_items(self) -> list[CatalogChange]:
        items = []
        for i in range(self.config.n_items):
            primary = self.categories[i % len(self.categories)]
            cats = [primary]
            if self.rng.random() < 0.35:
                cats.append(self.rng.choice([c for c in self.categories if c != primary]))
            words, themes = CATEGORIES[primary]
            head = self.rng.choice(words)  # draw order kept: the same seed, the same catalog
            joiner = self.rng.choice(["of", "in", "and the", "at"])
            other = self.rng.choice(CATEGORIES[self.rng.choice(cats)][0])
            title = f"{head} {joiner} {other}"
            mood = self.rng.choice(MOODS)
            audience = self.rng.choice(AUDIENCES)
            year = self.rng.randint(1970, 2025)
            description = (
                f"A {mood} {primary} story about {self.rng.choice(themes)}"
                f"{' and ' + self.rng.choice(CATEGORIES[cats[-1]][1]) if len(cats) > 1 else ''}, "
                f"made for {audience}."
            )
            items.append(
                CatalogChange(
                    change_id=f"syn-item-{i}-v1",
                    item_id=f"item-{i:05d}",
                    version=1,
                    title=f"{title} ({year})",
                    categories=cats,
                    description=description,
                    attributes={
                        "year": str(year),
                        "language": self.rng.choice(LANGUAGES),
                        "mood": mood,
                        "audience": audience,
                    },
                    occurred_at=self.start,
                )
            )
        order = list(range(len(items)))
        self.rng.shuffle(order)  # popularity rank independent of category
        return [items[i] for i in order]

    def catalog(self) -> list[CatalogChange]:
        """One UPSERT per item (version 1)."""
        return list(self.items)

    def catalog_updates(self, n: int) -> list[CatalogChange]:
        """``n`` later changes: new versions with edited text, a few deletes."""
        out = []
        for idx in self.rng.sample(range(len(self.items)), k=min(n, len(self.items))):
            item = self.items[idx]
            if self.rng.random() < 0.1:
                out.append(
                    item.model_copy(
                        update={"change_id": f"{item.item_id}-v2", "version": 2, "op": "DELETE"}
                    )
                )
            else:
                out.append(
                    item.model_copy(
                        update={
                            "change_id": f"{item.item_id}-v2",
                            "version": 2,
                            "description": item.description + " Now remastered.",
                            "occurred_at": utcnow(),
                        }
                    )
                )
        return out

    # ---- users --------------------------------------------------------------------------
    def _make_users(self) -> list[SyntheticUser]:
        users = []
        for u in range(self.config.n_users):
            alpha = np.full(len(self.categories), self.config.taste_concentration)
            taste = self.np_rng.dirichlet(alpha)
            activity = int(min(400, self.np_rng.zipf(self.config.activity_zipf_a)))
            users.append(
                SyntheticUser(
                    user_id=f"user-{u:05d}",
                    taste=dict(zip(self.categories, taste.tolist(), strict=True)),
                    activity=activity,
                )
            )
        return users

    def _item_weights(self, user: SyntheticUser) -> np.ndarray:
        affinity = np.array(
            [sum(user.taste[c] for c in item.categories) for item in self.items], dtype=float
        )
        w = self.popularity * (0.05 + affinity)
        return w / w.sum()

    def _pick_item(self, user: SyntheticUser, weights: np.ndarray) -> CatalogChange:
        return self.items[int(self.np_rng.choice(len(self.items), p=weights))]

    def query_for(self, user: SyntheticUser) -> str:
        """A natural-language query in the user's taste."""
        cats = list(user.taste)
        category = self.rng.choices(cats, weights=[user.taste[c] for c in cats])[0]
        return self.rng.choice(QUERY_TEMPLATES).format(
            mood=self.rng.choice(MOODS),
            theme=self.rng.choice(CATEGORIES[category][1]),
            category=category,
            decade=self.rng.choice([80, 90, 2000, 2010]),
            audience=self.rng.choice(AUDIENCES),
        )

    def events(self) -> Iterator[UserEvent]:
        """Every user's history, globally time-ordered."""
        out: list[UserEvent] = []
        for user in self.users:
            out.extend(self._user_events(user))
        out.sort(key=lambda e: (e.occurred_at, e.event_id))
        yield from out

    def _user_events(self, user: SyntheticUser) -> list[UserEvent]:
        weights = self._item_weights(user)
        events: list[UserEvent] = []
        t = self.start + timedelta(minutes=self.rng.randint(0, 60 * 24))
        budget = user.activity
        session = 0
        seq = 0
        while budget > 0:
            session += 1
            sid = f"{user.user_id}-s{session}"
            if self.rng.random() < self.config.query_rate:
                seq += 1
                events.append(
                    UserEvent(
                        event_id=f"{user.user_id}-e{seq}",
                        user_id=user.user_id,
                        event_type=EventType.SEARCH,
                        query=self.query_for(user),
                        session_id=sid,
                        occurred_at=t,
                    )
                )
            for _ in range(min(budget, self.rng.randint(1, 8))):
                budget -= 1
                item = self._pick_item(user, weights)
                t += timedelta(seconds=self.rng.randint(20, 400))
                funnel = [EventType.VIEW]
                r = self.rng.random()
                if r < 0.5:
                    funnel.append(EventType.CLICK)
                if r < 0.15:
                    funnel.append(EventType.CART)
                if r < 0.07:
                    funnel.append(EventType.PURCHASE)
                if r > 0.93:
                    funnel = [EventType.VIEW, EventType.DISMISS]
                for kind in funnel:
                    seq += 1
                    events.append(
                        UserEvent(
                            event_id=f"{user.user_id}-e{seq}",
                            user_id=user.user_id,
                            event_type=kind,
                            item_id=item.item_id,
                            session_id=sid,
                            occurred_at=t,
                        )
                    )
                    t += timedelta(seconds=self.rng.randint(1, 30))
                if self.rng.random() < 0.2:
                    affinity = sum(user.taste[c] for c in item.categories)
                    rating = max(
                        0.5,
                        min(
                            5.0,
                            round((1.5 + 3.5 * min(1.0, affinity * 2) + self.rng.gauss(0, 0.6)) * 2)
                            / 2,
                        ),
                    )
                    seq += 1
                    events.append(
                        UserEvent(
                            event_id=f"{user.user_id}-e{seq}",
                            user_id=user.user_id,
                            event_type=EventType.RATING,
                            item_id=item.item_id,
                            rating=rating,
                            session_id=sid,
                            occurred_at=t,
                        )
                    )
                user.consumed.add(item.item_id)
            t += self.config.session_gap + timedelta(minutes=self.rng.randint(0, 600))
        return events

    # ---- requests -----------------------------------------------------------------------
    def requests(
        self, n: int, new_user_share: float = 0.15, query_share: float = 0.25
    ) -> list[RecRequest]:
        """A request mix over known users (warm and cold), brand-new users and queries."""
        out = []
        active = sorted(self.users, key=lambda u: -u.activity)
        for i in range(n):
            if self.rng.random() < new_user_share:
                user_id = f"new-user-{i:05d}"
                query = self.rng.choice(
                    [None, "something funny for a family night", "a tense thriller with a heist"]
                )
            else:
                user = self.rng.choice(
                    active[: max(1, len(active) // 2)] if self.rng.random() < 0.6 else active
                )
                user_id = user.user_id
                query = self.query_for(user) if self.rng.random() < query_share else None
            out.append(
                RecRequest(
                    request_id=f"req-{self.config.seed}-{i:06d}",
                    user_id=user_id,
                    k=10,
                    query=query,
                    deadline_ms=1500,
                )
            )
        return out

    # ---- outcomes -----------------------------------------------------------------------
    def outcomes(
        self,
        requests: list[RecRequest],
        per_request: int = 2,
        within: timedelta = timedelta(minutes=15),
    ) -> list[UserEvent]:
        """What each requesting user does next, whatever was recommended (ground truth).

        Per request, up to ``per_request`` CLICKs (a fifth of them followed by a PURCHASE)
        on items drawn from the user's taste (a brand-new user: from popularity) that they
        have not consumed, within ``within`` after ``requested_at``. Independent of any
        response, so every policy replayed offline is judged against the same behaviour.
        """
        users = {u.user_id: u for u in self.users}
        out: list[UserEvent] = []
        for request in requests:
            user = users.get(request.user_id)
            weights = self._item_weights(user) if user is not None else self.popularity
            consumed = user.consumed if user is not None else set()
            picked: list[str] = []
            for _ in range(per_request * 4):
                item = self.items[int(self.np_rng.choice(len(self.items), p=weights))].item_id
                if item not in consumed and item not in picked:
                    picked.append(item)
                if len(picked) == per_request:
                    break
            span = max(1, int(within.total_seconds()))
            for n, item in enumerate(picked):
                at = request.requested_at + timedelta(seconds=self.rng.randint(5, span))
                kinds = [EventType.CLICK]
                if self.rng.random() < 0.2:
                    kinds.append(EventType.PURCHASE)
                for kind in kinds:
                    out.append(
                        UserEvent(
                            event_id=f"{request.request_id}-o{n}-{kind.value.lower()}",
                            user_id=request.user_id,
                            event_type=kind,
                            item_id=item,
                            session_id=f"{request.request_id}-session",
                            occurred_at=at,
                        )
                    )
        out.sort(key=lambda e: (e.occurred_at, e.event_id))
        return out
