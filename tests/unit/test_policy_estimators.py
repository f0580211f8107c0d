"""The off-policy estimators of recsys.policy against values worked out by hand (the
arithmetic is in the comments), including a log where IPS and SNIPS differ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.policy.estimators import (
    Terms,
    bootstrap_intervals,
    dr,
    effective_sample_size,
    estimate,
    ips,
    snips,
    terms,
)
from recsys.policy.logged import LoggedRequest
from recsys.policy.model import CELLS, Action, Context, Fusion, Policy, Rule
from recsys.policy.reward_model import RidgeRewardModel
from recsys.records import Route, WarmthBucket

W, C = WarmthBucket.WARM, WarmthBucket.COLD
WARM = Context(W, has_query=False, has_history=True)
COLD_Q = Context(C, has_query=True, has_history=True)
CF = Action(Route.CF, False)
HYB = Action(Route.HYBRID, False, Fusion(1.0, 0.5))
CONTENT_LLM = Action(Route.CONTENT, True)


def _policy() -> Policy:
    """Deterministic (ε = 0): CF for warm users without a query, CONTENT with the LLM
    for everyone else."""
    base = {c: Rule(Route.CONTENT, True, Fusion(1.0, 0.5)) for c in CELLS}
    base[WARM.cell] = Rule(Route.CF, False, Fusion(1.0, 0.5))
    return Policy(base, {b: 0.0 for b in (C, WarmthBucket.WARMING, W)})


LOG = [
    LoggedRequest("r1", WARM, CF, 0.5, 1.0),
    LoggedRequest("r2", WARM, HYB, 0.25, 0.0),
    LoggedRequest("r3", WARM, CF, 0.5, 0.0),
    LoggedRequest("r4", COLD_Q, CONTENT_LLM, 0.2, 1.0),
]


class ConstantModel:
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, ctx: Context, action: Action) -> float:
        return self.value


def test_ips_and_snips_differ_by_hand() -> None:
    target = _policy()
    t = terms(LOG, target.probability)
    # π(a_i|x_i) = [1, 0, 1, 1]; w = [1/0.5, 0, 1/0.5, 1/0.2] = [2, 0, 2, 5]
    assert list(t.weights) == pytest.approx([2.0, 0.0, 2.0, 5.0])
    # IPS = (2·1 + 0 + 2·0 + 5·1) / 4 = 7/4; SNIPS = 7 / (2 + 0 + 2 + 5) = 7/9
    assert ips(t) == pytest.approx(1.75)
    assert snips(t) == pytest.approx(7 / 9)
    # ESS = 9² / (4 + 0 + 4 + 25) = 81/33
    assert effective_sample_size(t.weights) == pytest.approx(81 / 33)
    assert dr(t) is not None and math.isnan(dr(t))  # no reward model, no DR


def test_doubly_robust_by_hand() -> None:
    target = _policy()
    t = terms(LOG, target.probability, ConstantModel(0.5), target.actions)
    # deterministic target: direct part = q̂ = 0.5; DR_i = 0.5 + w_i (r_i - 0.5)
    # = [0.5 + 1, 0.5 + 0, 0.5 - 1, 0.5 + 2.5] = [1.5, 0.5, -0.5, 3.0] → mean 4.5/4
    assert t.dr_terms is not None
    assert list(t.dr_terms) == pytest.approx([1.5, 0.5, -0.5, 3.0])
    assert dr(t) == pytest.approx(1.125)
    # a perfect-on-average model with exact weights: DR of the logging policy's own
    # actions (w = 1 where the target agrees) equals the mean of its direct part when
    # the residuals cancel: q̂ = r̄ of the agreeing requests
    t0 = terms(LOG[:1], target.probability, ConstantModel(1.0), target.actions)
    assert dr(t0) == pytest.approx(1.0)  # 1 + 2·(1 - 1)


def test_a_stochastic_target_spreads_the_direct_part() -> None:
    # ε = 0.3 in the warm bucket: 8 actions for a warm user with history and the LLM;
    # CF without rerank is the rule (0.7), every other action 0.3/7
    target = _policy().with_epsilon({W: 0.3})
    t = terms(LOG[:3], target.probability, ConstantModel(0.5), target.actions)
    assert list(t.weights) == pytest.approx([0.7 / 0.5, (0.3 / 7) / 0.25, 0.7 / 0.5])
    # Σ_a π(a|x) q̂ = 0.5 whatever π is, so DR = 0.5 + mean(w (r - 0.5))
    expected = 0.5 + np.mean([1.4 * 0.5, (0.3 / 7 / 0.25) * -0.5, 1.4 * -0.5])
    assert dr(t) == pytest.approx(expected)


def test_snips_is_the_logged_mean_for_the_logging_policy() -> None:
    logging = _policy().with_epsilon({W: 0.5})  # CF 0.5, seven others 0.5/7
    log = [
        LoggedRequest("a", WARM, CF, 0.5, 1.0),
        LoggedRequest("b", WARM, HYB, 0.5 / 7, 0.0),
        LoggedRequest("c", WARM, CF, 0.5, 1.0),
    ]
    t = terms(log, logging.probability)
    assert list(t.weights) == pytest.approx([1.0, 1.0, 1.0])
    assert snips(t) == pytest.approx(2 / 3) and ips(t) == pytest.approx(2 / 3)


def test_no_agreement_leaves_snips_undefined() -> None:
    target = _policy().with_rules({WARM.cell: Rule(Route.POPULARITY, False, Fusion(1.0, 0.5))})
    t = terms(LOG[:3], target.probability)
    assert ips(t) == 0.0 and math.isnan(snips(t))
    est = estimate(t)
    assert est.snips is None and est.matched == 0 and est.ess == 0.0


def test_bad_propensities_are_refused() -> None:
    with pytest.raises(ValueError, match="propensity"):
        terms([LoggedRequest("x", WARM, CF, 0.0, 1.0)], _policy().probability)


def test_bootstrap_intervals_cover_the_point_and_shrink_with_n() -> None:
    rng = np.random.default_rng(3)
    rewards = rng.random(400) < 0.3
    small = Terms(np.ones(100), rewards[:100].astype(float), None)
    large = Terms(np.ones(400), rewards.astype(float), None)
    ci_small = bootstrap_intervals(small, 400, 0.95, np.random.default_rng(1))["snips"]
    ci_large = bootstrap_intervals(large, 400, 0.95, np.random.default_rng(1))["snips"]
    assert ci_small is not None and ci_large is not None
    assert ci_small[0] <= snips(small) <= ci_small[1]
    assert ci_large[1] - ci_large[0] < ci_small[1] - ci_small[0]
    # a constant reward has a degenerate interval; the same seed gives the same interval
    flat = Terms(np.array([1.0, 2.0, 0.5]), np.ones(3), np.ones(3))
    assert bootstrap_intervals(flat, 100, 0.9, np.random.default_rng(0))["snips"] == (1.0, 1.0)
    again = bootstrap_intervals(large, 400, 0.95, np.random.default_rng(1))["snips"]
    assert again == ci_large


def test_the_ridge_reward_model_recovers_cell_and_action_means() -> None:
    log = [LoggedRequest(f"a{i}", WARM, CF, 0.5, float(i % 4 != 0)) for i in range(200)]
    log += [LoggedRequest(f"b{i}", WARM, HYB, 0.5, float(i % 4 == 0)) for i in range(200)]
    q = RidgeRewardModel(ridge=0.1).fit(log)
    assert q(WARM, CF) == pytest.approx(0.75, abs=0.01)
    assert q(WARM, HYB) == pytest.approx(0.25, abs=0.01)
    # an action never logged gets what its known features say, inside [0, 1]
    assert 0.0 <= q(COLD_Q, CONTENT_LLM) <= 1.0
