"""The ``covisit`` CF list by hand: each seed's co-visits as shares of its own weight, the
newest seeds only, no ALS asked; and where it sits in the route-selection space."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from recsys.cf.covisit import Covisitation, CovisitConfig, rank_neighbors, rank_shares
from recsys.evaluation.route_selection import FUSIONS
from recsys.records import Route
from recsys.serving.candidates import COVISIT_SEEDS, cf_candidates
from recsys.serving.config import BucketRoute

T0 = datetime(2026, 3, 1, tzinfo=UTC)
CFG = CovisitConfig(
    covisit_half_life_h=1.0, covisit_window_items=2, covisit_window_s=600, recent_items_max=5
)
#: x co-visited y (2^3 = 8) and z (2^1 = 2); the blockbuster w co-visited z and v 1024 each
ROWS = [("x", "y", 3.0), ("x", "z", 1.0), ("w", "z", 10.0), ("w", "v", 10.0)]


def test_every_seed_has_one_vote() -> None:
    # shares: x → y 0.8, z 0.2; w → z 0.5, v 0.5; summed: y 0.8, z 0.7, v 0.5
    got = rank_shares(ROWS, ["x", "w"], 5, ())
    assert [(i, v) for i, _, v in got] == [("y", "x"), ("z", "w"), ("v", "w")]
    assert [s for _, s, _ in got] == pytest.approx([0.8, 0.7, 0.5])
    # summed weights instead: the blockbuster's neighbours take the top
    raw = rank_neighbors(ROWS, ["x", "w"], 5, (), 0.0)
    assert [i for i, _, _ in raw] == ["z", "v", "y"]


def test_shares_are_exact_in_log_space_and_ignore_the_reference_time() -> None:
    # weights far beyond a double (2^5000): the shares are still 0.8 / 0.2
    far = [(s, c, w + 5000.0) for s, c, w in ROWS]
    assert rank_shares(far, ["x", "w"], 5, ()) == rank_shares(ROWS, ["x", "w"], 5, ())


def test_excluded_items_keep_their_place_in_the_seeds_total() -> None:
    got = rank_shares(ROWS, ["x", "w"], 5, {"y"})
    assert [(i, round(s, 6)) for i, s, _ in got] == [("z", 0.7), ("v", 0.5)]
    assert rank_shares(ROWS, ["x", "w"], 1, ()) == [("y", pytest.approx(0.8), "x")]
    # a seed is never its own neighbour's recommendation
    assert [i for i, _, _ in rank_shares([*ROWS, ("x", "w", 0.0)], ["x", "w"], 5, ())] == [
        "y",
        "z",
        "v",
    ]
    assert rank_shares([], ["x"], 5, ()) == []


def test_in_memory_neighbours_by_shares() -> None:
    model = Covisitation(CFG)
    for user, items in {"u1": "xy", "u2": "xy", "u3": "xz", "u4": "wz"}.items():
        for i, item in enumerate(items):
            model.update(user, item, T0 + timedelta(seconds=i))
    # x: y twice, z once → 2/3, 1/3; w: z once → 1; z = 4/3 ranks first, via w
    got = model.neighbors(["x", "w"], 5, shares=True)
    assert [(i, v) for i, _, v in got] == [("z", "w"), ("y", "x")]
    assert [s for _, s, _ in got] == pytest.approx([4 / 3, 2 / 3], rel=1e-3)


class CovisitOnly:
    """A CF port over the in-memory co-visitation model; asking ALS is an error."""

    def __init__(self, model: Covisitation) -> None:
        self.model = model
        self.asked: list[list[str]] = []

    async def als(self, recent: Sequence[tuple[str, float]], n: int, exclude: Collection[str],
                  fold: str = "least_squares") -> list[tuple[str, float]]:  # fmt: skip
        raise AssertionError("the covisit list must not ask ALS")

    async def covisit(
        self, items: Sequence[str], n: int, exclude: Collection[str], *, shares: bool = False
    ) -> list[tuple[str, float, str]]:
        assert shares
        self.asked.append(list(items))
        return self.model.neighbors(items, n, exclude, shares=True)

    async def popular(self, n: int, exclude: Collection[str]) -> list[tuple[str, float]]:
        return []

    async def model_version(self) -> str | None:
        return None


async def test_the_covisit_list_reads_the_newest_seeds_only() -> None:
    model = Covisitation(CFG)
    for user, items in {"u1": "ab", "u2": "ac", "u3": "gh"}.items():
        for i, item in enumerate(items):
            model.update(user, item, T0 + timedelta(seconds=i))
    cf = CovisitOnly(model)
    # newest first: a (twice), four items nobody co-visited, then g — the 6th distinct item,
    # beyond the seeds: its neighbour h is not asked for
    recent = [("a", 2.0), ("a", 1.0), ("p", 1.0), ("q", 1.0), ("r", 1.0), ("s", 1.0),
              ("g", 1.0)]  # fmt: skip
    out = await cf_candidates(cf, recent, 10, {"c"}, "covisit")
    assert cf.asked == [["a", "p", "q", "r", "s"]] and COVISIT_SEEDS == 5
    # a's neighbours b (1/2) and c (1/2, excluded); never h
    assert [(c.item_id, c.source, c.via) for c in out] == [("b", "covisit", "a")]
    assert out[0].score == pytest.approx(0.5)
    assert await cf_candidates(cf, [], 10, (), "covisit") == []


def test_the_option_and_its_candidates() -> None:
    assert BucketRoute(Route.CF, cf_fold="covisit").cf_fold == "covisit"
    with pytest.raises(ValueError, match="cf_fold"):
        BucketRoute(Route.CF, cf_fold="nearest")  # type: ignore[arg-type]
    covisit = {c.name: c for c in FUSIONS if c.cf_fold == "covisit"}
    assert set(covisit) == {"cf_covisit", "hybrid_covisit_c1_p0.5"}
    assert covisit["hybrid_covisit_c1_p0.5"].bucket_route == BucketRoute(
        Route.HYBRID, 1.0, 0.5, "covisit"
    )
    assert len({c.name for c in FUSIONS}) == len(FUSIONS) == 8  # Bonferroni pays for 8
