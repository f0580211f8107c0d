"""Item-to-item co-visitation, time-decayed: "items that go with these items".

When a user visits item ``i`` at time ``t`` (VIEW, CLICK, CART, PURCHASE, RATING), ``i``
is paired with each of the user's ``covisit_window_items`` most recent visited items
``j ≠ i`` whose visit lies within ``covisit_window_s`` of ``t``; both ``(i, j)`` and
``(j, i)`` gain the weight of that co-visit. Weights decay with half-life
``covisit_half_life_h``.

Decay without rewriting rows (*forward decay*, Cormode et al. 2009): a co-visit at
time ``t`` adds ``2^((t - t0)/h)`` for a fixed ``t0`` (:data:`EPOCH`); the score of a
pair at time ``T`` is its sum times ``2^(-(T - t0)/h)``, so ranking needs no rescaling
at all and an update touches only the pairs it names. Sums are kept as base-2
logarithms (:func:`log2_add`) so that neither 1995 nor 2095 overflows a double.

:class:`Covisitation` is the in-memory model (offline evaluation, tests);
:class:`recsys.cf.pg_covisit.PgCovisitation` keeps the same numbers in Postgres,
updated by the ``users`` worker from the user state's recent items
(:func:`pairs_for` on the same :func:`recsys.recent.push_recent` list), so both
agree on the same log.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from recsys.recent import RecentList, push_recent

__all__ = [
    "EPOCH",
    "CovisitConfig",
    "Covisitation",
    "Pair",
    "aggregate",
    "log2_add",
    "log2_time",
    "pairs_for",
    "rank_neighbors",
    "rank_shares",
]

#: The reference time ``t0`` of forward decay.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

#: ``(item_a, item_b, log2 weight)``: one directed co-visit contribution.
Pair = tuple[str, str, float]


class CovisitSettings(Protocol):
    """The settings co-visitation reads (the process settings' ``users`` section)."""

    @property
    def covisit_half_life_h(self) -> float: ...
    @property
    def covisit_window_items(self) -> int: ...
    @property
    def covisit_window_s(self) -> int: ...
    @property
    def recent_items_max(self) -> int: ...


@dataclass(frozen=True)
class CovisitConfig:
    """Co-visitation parameters (names as in the settings' ``users`` section)."""

    covisit_half_life_h: float = 168.0
    covisit_window_items: int = 20
    covisit_window_s: int = 86_400
    #: Visited items the offline model keeps per user (the user state's bound).
    recent_items_max: int = 50

    @classmethod
    def from_settings(cls, settings: CovisitSettings) -> CovisitConfig:
        """The configuration a settings section describes."""
        return cls(
            covisit_half_life_h=settings.covisit_half_life_h,
            covisit_window_items=settings.covisit_window_items,
            covisit_window_s=settings.covisit_window_s,
            recent_items_max=settings.recent_items_max,
        )


def _as_time(at: datetime | float) -> datetime:
    if isinstance(at, datetime):
        return at
    return datetime.fromtimestamp(float(at), tz=UTC)


def log2_time(at: datetime | float, half_life_h: float) -> float:
    """``(at - t0) / half-life``: the base-2 log of a co-visit's weight at ``at``."""
    return (_as_time(at) - EPOCH).total_seconds() / (half_life_h * 3600.0)


def log2_add(a: float, b: float) -> float:
    """``log2(2^a + 2^b)`` without overflow."""
    hi, lo = (a, b) if a >= b else (b, a)
    d = lo - hi
    if d < -60.0:  # below double precision of the sum (and what SQL does too)
        return hi
    return hi + math.log2(1.0 + math.pow(2.0, d))


def pairs_for(
    recent: Sequence[tuple[str, datetime]], item: str, at: datetime, cfg: CovisitConfig
) -> list[Pair]:
    """The co-visits of visiting ``item`` at ``at`` after the visits ``recent``."""
    out: list[Pair] = []
    window_s = float(cfg.covisit_window_s)
    per_log2 = cfg.covisit_half_life_h * 3600.0
    for other, when in recent[: cfg.covisit_window_items]:
        if other == item:
            continue
        delta = (at - when).total_seconds()
        if delta > window_s or -delta > window_s:
            continue
        # log2_time(max(at, when)), inlined: this runs for every pair of every visit
        weight = ((at if delta >= 0 else when) - EPOCH).total_seconds() / per_log2
        out.append((item, other, weight))
        out.append((other, item, weight))
    return out


def aggregate(pairs: Iterable[Pair]) -> dict[tuple[str, str], float]:
    """Sum contributions per directed pair (in log2 space), in first-seen order."""
    out: dict[tuple[str, str], float] = {}
    for a, b, w in pairs:
        key = (a, b)
        prev = out.get(key)
        out[key] = w if prev is None else log2_add(prev, w)
    return out


def rank_neighbors(
    rows: Iterable[tuple[str, str, float]],
    seeds: Collection[str],
    n: int,
    exclude: Collection[str],
    ref_log2: float,
) -> list[tuple[str, float, str]]:
    """Best ``n`` of ``(seed, candidate, log2 weight)`` rows: ``(item, score, via)``.

    A candidate's score is the sum over seeds of the pair weight decayed to the
    reference time; ``via`` is the seed that contributed most. Seeds and ``exclude`` are
    never returned; ties go by item id.
    """
    skip = set(seeds) | set(exclude)
    score: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for seed, candidate, log2_w in rows:
        if candidate in skip:
            continue
        value = math.pow(2.0, min(log2_w - ref_log2, 1000.0))
        score[candidate] = score.get(candidate, 0.0) + value
        top = best.get(candidate)
        if top is None or value > top[0] or (value == top[0] and seed < top[1]):
            best[candidate] = (value, seed)
    ranked = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(item, value, best[item][1]) for item, value in ranked]


def rank_shares(
    rows: Iterable[tuple[str, str, float]],
    seeds: Collection[str],
    n: int,
    exclude: Collection[str],
) -> list[tuple[str, float, str]]:
    """Best ``n`` by the seeds' *shares*: ``(item, score, via)``.

    Each seed's rows are turned into shares of that seed's total weight over the rows
    given for it (``2^(w - max) / Σ 2^(w' - max)``: exact in log2 space, and the
    reference time of the decay cancels out), and a candidate's score is the sum of its
    shares over the seeds — every seed has one vote, so a blockbuster among the seeds
    (whose pair weights are orders of magnitude larger) does not drown the others'
    neighbours. Shares are taken before seeds and ``exclude`` are dropped, so an
    excluded neighbour still counts in its seed's total; ``via`` is the seed that gave
    the largest share; ties go by item id.
    """
    by_seed: dict[str, list[tuple[str, float]]] = {}
    for seed, candidate, log2_w in rows:
        by_seed.setdefault(seed, []).append((candidate, log2_w))
    skip = set(seeds) | set(exclude)
    score: dict[str, float] = {}
    best: dict[str, tuple[float, str]] = {}
    for seed, pairs in by_seed.items():
        top = max(w for _, w in pairs)
        weights = [(c, math.pow(2.0, w - top)) for c, w in pairs]
        total = sum(v for _, v in weights)
        for candidate, value in weights:
            if candidate in skip:
                continue
            share = value / total
            score[candidate] = score.get(candidate, 0.0) + share
            prev = best.get(candidate)
            if prev is None or share > prev[0] or (share == prev[0] and seed < prev[1]):
                best[candidate] = (share, seed)
    ranked = sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [(item, value, best[item][1]) for item, value in ranked]


class Covisitation:
    """In-memory co-visitation model: feed visits in time order, ask for neighbours."""

    def __init__(self, cfg: CovisitConfig | None = None) -> None:
        self.cfg = cfg or CovisitConfig()
        self._recent: dict[str, RecentList] = {}
        self._weights: dict[str, dict[str, float]] = {}
        #: The latest visit time seen (the default reference time of scores).
        self.latest: datetime | None = None

    def update(self, user: str, item: str, at: datetime | float) -> list[Pair]:
        """Record that ``user`` visited ``item`` at ``at``; return the co-visits added."""
        when = _as_time(at)
        recent = self._recent.get(user, [])
        pairs = pairs_for(recent, item, when, self.cfg)
        self.add(pairs)
        self._recent[user] = push_recent(recent, item, when, self.cfg.recent_items_max)
        if self.latest is None or when > self.latest:
            self.latest = when
        return pairs

    def add(self, pairs: Iterable[Pair]) -> None:
        """Add co-visit contributions computed elsewhere."""
        for a, b, w in pairs:
            row = self._weights.setdefault(a, {})
            prev = row.get(b)
            row[b] = w if prev is None else log2_add(prev, w)

    def log2_weights(self) -> dict[tuple[str, str], float]:
        """Every directed pair's log2 forward-decayed weight."""
        return {(a, b): w for a, row in self._weights.items() for b, w in row.items()}

    def score(self, a: str, b: str, at: datetime | float | None = None) -> float:
        """The decayed co-visitation weight of ``(a, b)`` at ``at`` (default: latest)."""
        w = self._weights.get(a, {}).get(b)
        if w is None:
            return 0.0
        return math.pow(2.0, min(w - self._ref(at), 1000.0))

    def neighbors(
        self,
        items: Sequence[str],
        n: int,
        exclude: Collection[str] = (),
        at: datetime | float | None = None,
        *,
        shares: bool = False,
    ) -> list[tuple[str, float, str]]:
        """Items that go with ``items``: ``(item_id, score, via_item_id)``, best first.

        ``shares``: score by each seed's shares of its own weight (:func:`rank_shares`)
        instead of by the summed decayed weights (:func:`rank_neighbors`).
        """
        seeds = list(dict.fromkeys(items))
        rows = (
            (seed, candidate, w)
            for seed in seeds
            for candidate, w in self._weights.get(seed, {}).items()
        )
        if shares:
            return rank_shares(rows, seeds, n, exclude)
        return rank_neighbors(rows, seeds, n, exclude, self._ref(at))

    def _ref(self, at: datetime | float | None) -> float:
        ref = at if at is not None else self.latest
        return log2_time(ref, self.cfg.covisit_half_life_h) if ref is not None else 0.0
