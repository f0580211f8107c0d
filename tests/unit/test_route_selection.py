"""The route-selection procedure: incumbent, challenger, corrected paired intervals."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.bootstrap import mean_interval, paired_difference
from recsys.evaluation.route_selection import (
    CANDIDATES,
    EMPTY_BUCKET,
    FUSIONS,
    SINGLE_ROUTES,
    choose_bucket,
    choose_routes,
)
from recsys.records import Route, WarmthBucket
from recsys.serving.config import ServingConfig

N = 400


def base_scores(n: int = N, seed: int = 1) -> dict[str, np.ndarray]:
    """Every candidate with the same noisy per-user NDCG; tests shift some of them."""
    rng = np.random.default_rng(seed)
    shared = rng.uniform(0.0, 0.3, size=n)
    return {c.name: shared.copy() for c in CANDIDATES}


def shifted(values: np.ndarray, mean: float, spread: float) -> np.ndarray:
    """``values`` plus a per-user difference of exactly ``mean`` ± ``spread`` (alternating):
    the paired difference has that mean and standard deviation."""
    signs = np.where(np.arange(len(values)) % 2 == 0, 1.0, -1.0)
    return values + mean + spread * signs


def test_bootstrap_intervals_known_answers() -> None:
    x = np.array([0.0, 1.0] * 50)
    ci = mean_interval(x, seed=3)
    assert ci.mean == 0.5 and ci.n == 100
    assert ci.lo is not None and ci.hi is not None
    assert 0.38 < ci.lo < 0.45 < 0.55 < ci.hi < 0.62  # ± 1.96 * 0.05
    same = paired_difference(x, x)
    assert (same.mean, same.lo, same.hi) == (0.0, 0.0, 0.0) and not same.excludes_zero()
    assert mean_interval(x, seed=3) == ci  # seeded: reproducible
    assert mean_interval([0.2]).lo is None
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])


def test_incumbent_is_the_best_single_route_and_a_clear_winner_is_adopted() -> None:
    ndcg = base_scores()
    ndcg["cf"] = ndcg["cf"] + 0.02
    winner = FUSIONS[2].name
    ndcg[winner] = shifted(ndcg["cf"], 0.03, 0.05)  # z = 0.03 / (0.05 / 20) = 12
    choice = choose_bucket(WarmthBucket.WARM, ndcg, ndcg)
    assert choice.incumbent == "cf" and choice.challenger == winner
    assert choice.chosen.name == winner and "adopted" in choice.reason
    scores = {s.name: s for s in choice.scores}
    assert scores["cf"].versus_incumbent is None
    diff = scores[winner].versus_incumbent
    assert diff is not None and diff.mean == pytest.approx(0.03) and diff.confidence > 0.99


def test_a_variant_within_noise_leaves_the_single_route() -> None:
    ndcg = base_scores()
    ndcg["popularity"] = ndcg["popularity"] + 0.01
    ndcg[FUSIONS[0].name] = shifted(ndcg["popularity"], 0.002, 0.1)  # z = 0.4
    choice = choose_bucket(WarmthBucket.COLD, ndcg, ndcg)
    assert choice.chosen.name == "popularity" and "stays" in choice.reason


def test_the_bonferroni_correction_pays_for_picking_the_best_of_many() -> None:
    """z = 2.2: outside a plain 95 % interval, inside the corrected 1 - 0.05/6 one."""
    ndcg = base_scores()
    ndcg[FUSIONS[1].name] = shifted(ndcg["hybrid"], 0.011, 0.1)
    plain = paired_difference(ndcg[FUSIONS[1].name], ndcg["hybrid"])
    assert plain.lo is not None and plain.lo > 0
    choice = choose_bucket(WarmthBucket.WARMING, ndcg, ndcg)
    assert choice.incumbent == "popularity"  # ties among singles: the first declared
    assert choice.challenger == FUSIONS[1].name and choice.chosen.name == "popularity"
    alone = choose_bucket(WarmthBucket.WARMING, ndcg, ndcg, fusions=FUSIONS[1:2])
    assert alone.chosen.name == FUSIONS[1].name  # one comparison: no correction needed


def test_small_and_empty_buckets_adopt_no_variant() -> None:
    ndcg = base_scores(n=20)
    ndcg["content"] = ndcg["content"] + 0.05
    ndcg[FUSIONS[3].name] = shifted(ndcg["content"], 0.1, 0.01)
    small = choose_bucket(WarmthBucket.COLD, ndcg, ndcg)
    assert small.chosen.name == "content" and "no variant adopted" in small.reason
    empty = choose_bucket(WarmthBucket.COLD, base_scores(n=0), base_scores(n=0))
    assert empty.chosen == EMPTY_BUCKET and empty.users == 0


def test_unpaired_or_missing_figures_are_refused() -> None:
    ndcg = base_scores()
    with pytest.raises(ValueError, match="no validation figures"):
        choose_bucket(WarmthBucket.WARM, {k: v for k, v in ndcg.items() if k != "cf"}, ndcg)
    ndcg["cf"] = ndcg["cf"][:-1]
    with pytest.raises(ValueError, match="same users"):
        choose_bucket(WarmthBucket.WARM, ndcg, ndcg)


def test_the_choice_configures_serving() -> None:
    warm = base_scores()
    warm["cf"] = warm["cf"] + 0.05
    cold = base_scores()
    cold[FUSIONS[4].name] = shifted(cold["popularity"], 0.05, 0.02)
    choice = choose_routes(
        {
            WarmthBucket.COLD: (cold, cold),
            WarmthBucket.WARMING: (warm, warm),
            WarmthBucket.WARM: (warm, warm),
        }
    )
    config = ServingConfig(**choice.overrides())
    assert config.bucket_route(WarmthBucket.WARM).route is Route.CF
    assert config.bucket_route(WarmthBucket.WARMING).route is Route.CF
    assert config.cold == FUSIONS[4].bucket_route
    assert set(choice.as_json()) == {"cold", "warming", "warm"}
    assert {c.name for c in SINGLE_ROUTES} == {"popularity", "cf", "content", "hybrid"}
