"""The learning procedure on the simulated world with known truth (offline, no Kafka):
it finds a better policy when the logs support one, names what they cannot support,
and keeps the current policy when the evidence is not there."""

from __future__ import annotations

import pytest

from recsys.policy.learn import LearnConfig, learn, split
from recsys.policy.logged import requests_from_examples
from recsys.policy.model import BUCKETS, Cell
from recsys.records import FeedbackExample, Route, WarmthBucket, utcnow
from recsys.serving.default_policy import default_policy
from testkit.policy_world import PolicyWorld, design_config

W, M, C = WarmthBucket.WARM, WarmthBucket.WARMING, WarmthBucket.COLD
NEW_EPS = {b: 0.05 for b in BUCKETS}


def test_learns_a_better_policy_and_deploys_it() -> None:
    world = PolicyWorld(seed=3)
    logging = default_policy(design_config(0.3))
    log = world.simulate(logging, 6000, seed=3)
    result = learn(log, logging, cfg=LearnConfig(seed=1, epsilon=NEW_EPS, resamples=300))
    truth_logging = world.true_value(logging)
    truth_learned = world.true_value(result.learned)
    truth_best = world.true_value(world.oracle(logging).with_epsilon(NEW_EPS))
    assert truth_learned > truth_logging + 0.08
    assert truth_learned >= truth_best - 0.03
    assert result.deploy and result.reason.startswith("deployed")
    # the world's shape: warm users without a query do best on CF without the LLM
    assert result.learned.rules[Cell(W, False)].route is Route.CF
    assert not result.learned.rules[Cell(W, False)].rerank
    # the held-out SNIPS interval of the learned policy covers its true value
    est = result.estimates["learned"]["overall"]
    assert est.ci["snips"] is not None
    assert est.ci["snips"][0] <= truth_learned <= est.ci["snips"][1]
    assert result.n_selection + result.n_holdout == 6000
    assert result.as_json()["changed_cells"]


def test_without_exploration_nothing_else_can_be_estimated() -> None:
    world = PolicyWorld(seed=4)
    logging = default_policy(design_config(0.0))
    log = world.simulate(logging, 2000, seed=4)
    result = learn(log, logging, cfg=LearnConfig(seed=0, resamples=100))
    assert not result.deploy
    assert "kept the current policy" in result.reason
    assert result.learned.definition() == logging.definition()
    assert any("ε = 0" in u for u in result.unsupported)
    named = [u for u in result.unsupported if u.startswith("cf-only")]
    assert named and "CF never logged with history" in named[0]
    assert all(c.estimable == c.current for c in result.candidates if c.cell == "WARM/no-query")


def test_weak_evidence_keeps_the_current_policy() -> None:
    world = PolicyWorld(seed=5)
    logging = default_policy(design_config(0.3))
    log = world.simulate(logging, 300, seed=5)  # too few requests for a confident switch
    result = learn(log, logging, cfg=LearnConfig(seed=0, epsilon=NEW_EPS, resamples=300))
    assert not result.deploy
    assert "does not beat" in result.reason or "cannot" in result.reason


def test_the_split_is_stable_and_seeded() -> None:
    log = PolicyWorld(seed=1).simulate(default_policy(design_config(0.1)), 1000, 1)
    a = split(log, 0.3, seed=7)
    assert split(log, 0.3, seed=7) == a
    assert 250 < len(a[1]) < 350
    assert split(log, 0.3, seed=8)[1] != a[1]
    with pytest.raises(ValueError, match="holdout"):
        LearnConfig(holdout=1.0)
    with pytest.raises(ValueError, match="estimator"):
        LearnConfig(estimator="ips")


def _example(rid: str, item: str, clicked: bool, version: str | None) -> FeedbackExample:
    return FeedbackExample(
        example_id=f"{rid}:{item}",
        request_id=rid,
        user_id="u",
        item_id=item,
        rank=1,
        route="HYBRID",
        warmth_bucket="WARM",
        llm_used=False,
        propensity=0.8,
        clicked=clicked,
        impression_at=utcnow(),
        policy_version=version,
        has_history=True,
        rerank_available=True,
        content_weight=1.0,
        popularity_weight=0.5,
    )


def test_requests_from_examples() -> None:
    examples = [
        _example("r1", "a", False, "v1"),
        _example("r1", "b", True, "v1"),
        _example("r1", "b", True, "v1"),  # redelivered
        _example("r2", "a", False, "v1"),
        _example("r3", "a", True, None),  # logged before the whole decision was
    ]
    requests, skipped = requests_from_examples(examples)
    by_id = {r.request_id: r for r in requests}
    assert set(by_id) == {"r1", "r2"}
    assert (by_id["r1"].reward, by_id["r2"].reward) == (1.0, 0.0)
    assert by_id["r1"].action.fusion is not None and by_id["r1"].propensity == 0.8
    assert skipped["duplicates"] == 1 and skipped["no_policy_version"] == 1
