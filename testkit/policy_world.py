"""A synthetic world with known truth for policy learning.

Every user has a warmth bucket, a history or none, a rate of asking with a query, and
hidden preferences over what serving does: the probability that a request of theirs
ends in a click is ``sigmoid(route effect + rerank effect + fusion effect + their own
shift + their own taste for that action)``, where the route and rerank effects depend
on the bucket and on whether there is a query. The population, the query rates and
every one of those probabilities are known, so the true value of any policy — the
expected click rate per request — is an exact sum (:meth:`PolicyWorld.true_value`),
and the best policy is known too (:meth:`PolicyWorld.oracle`).

The shape is chosen so that the design rule (:func:`design_config`: HYBRID for everyone
with history, the LLM on for queries and cold users — the settings' policy when this
world was built, and the logging policy of the tests and the benchmark whatever the
shipped routes are now) is not the best, differently per bucket: cold
users do best on CONTENT with the LLM, warm users without a query on CF without it,
warm users with a query on HYBRID without it, warming users with a query on CONTENT with
it, and warming users without a query are already served best. The reward of the LLM
rerank is the world's statement of how good the LLM's reordering is for such users; the
serving path really calls the (simulated) LLM when the policy decides to.

Seeds change the users, their tastes and (``jitter``) the effects themselves, so a
benchmark over seeds sees different worlds, not one world resampled.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from recsys.policy.logged import LoggedRequest
from recsys.policy.model import CELLS, Action, Cell, Context, Policy, Rule
from recsys.records import Route, WarmthBucket
from recsys.serving.config import BucketRoute, ServingConfig

__all__ = ["QUERIES", "PolicyWorld", "SimUser", "design_config"]

C, M, W = WarmthBucket.COLD, WarmthBucket.WARMING, WarmthBucket.WARM
P, CO, CF, H = Route.POPULARITY, Route.CONTENT, Route.CF, Route.HYBRID

#: Logit of a click per route, by (bucket, query).
ROUTE_EFFECT: dict[tuple[WarmthBucket, bool], dict[Route, float]] = {
    (C, False): {P: -1.0, CO: 0.0, CF: -1.8, H: -0.6},
    (C, True): {P: -1.5, CO: 0.2, CF: -1.5, H: -0.4},
    (M, False): {P: -1.5, CO: -0.8, CF: -0.2, H: 0.1},
    (M, True): {P: -1.5, CO: 0.3, CF: -0.5, H: 0.0},
    (W, False): {P: -1.6, CO: -1.0, CF: 0.6, H: 0.0},
    (W, True): {P: -1.5, CO: -0.2, CF: 0.0, H: 0.4},
}
#: Logit change when the LLM reranks, by (bucket, query).
RERANK_EFFECT: dict[tuple[WarmthBucket, bool], float] = {
    (C, False): 0.5,
    (C, True): 0.6,
    (M, False): -0.3,
    (M, True): 0.2,
    (W, False): -0.4,
    (W, True): -0.5,
}
#: HYBRID's best content weight per bucket (other weights lose 0.3 logit per e-fold).
BEST_CONTENT_WEIGHT = {C: 3.0, M: 1.0, W: 0.5}


def design_config(epsilon: float = 0.0) -> ServingConfig:
    """The serving rule this world was shaped against: HYBRID for every user with
    history (cold users' fusion content 3, prior 1; the others 1, prior 0.5), exploring
    ``epsilon`` — ``default_policy(design_config(ε))`` is the worlds' logging policy."""
    hybrid = BucketRoute(Route.HYBRID)
    return ServingConfig(
        epsilon=epsilon,
        cold=BucketRoute(Route.HYBRID, 3.0, 1.0),
        warming=hybrid,
        warm=hybrid,
    )


QUERIES = (
    "a funny family comedy",
    "something dark about a heist",
    "space travel and artificial minds",
    "a cosy mystery in a small town",
    "an uplifting drama about second chances",
    "exciting action with car chases",
)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass(frozen=True)
class SimUser:
    """One simulated user: what serving sees (bucket, history) and what it does not."""

    user_id: str
    bucket: WarmthBucket
    has_history: bool
    query_rate: float
    shift: float  # hidden: how clicky the user is
    taste_seed: int  # hidden: seeds the user's own taste per action

    def context(self, has_query: bool, rerank_available: bool = True) -> Context:
        return Context(self.bucket, has_query, self.has_history, rerank_available)


@dataclass
class PolicyWorld:
    """Users with hidden preferences; exact values of policies.

    Args:
        seed: seeds the users, their tastes and the effects' jitter.
        users_per_bucket: users with history per bucket (plus ``new_users`` cold users
            without any history).
        jitter: standard deviation of the per-seed change of every effect (logits).
        taste: standard deviation of a user's own taste per action (logits).
        scale: multiplies the route and rerank effects (larger: easier to learn).
    """

    seed: int = 0
    users_per_bucket: int = 20
    new_users: int = 10
    jitter: float = 0.0
    taste: float = 0.3
    scale: float = 1.0
    rerank_available: bool = True
    users: list[SimUser] = field(init=False)
    route_effect: dict[tuple[WarmthBucket, bool], dict[Route, float]] = field(init=False)
    rerank_effect: dict[tuple[WarmthBucket, bool], float] = field(init=False)
    _mu: dict[tuple[str, bool, Action], float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.route_effect = {
            k: {r: self.scale * v + rng.gauss(0, self.jitter) for r, v in routes.items()}
            for k, routes in ROUTE_EFFECT.items()
        }
        self.rerank_effect = {
            k: self.scale * v + rng.gauss(0, self.jitter) for k, v in RERANK_EFFECT.items()
        }
        users = []
        for bucket in (C, M, W):
            for n in range(self.users_per_bucket):
                users.append(self._user(rng, f"sim-{bucket.value.lower()}-{n}", bucket, True))
        for n in range(self.new_users):
            users.append(self._user(rng, f"sim-new-{n}", C, False))
        self.users = users

    @staticmethod
    def _user(rng: random.Random, uid: str, bucket: WarmthBucket, history: bool) -> SimUser:
        return SimUser(
            uid, bucket, history, rng.uniform(0.2, 0.6), rng.gauss(0, 0.3), rng.getrandbits(32)
        )

    # ---- the truth ---------------------------------------------------------------------
    def mean_reward(self, user: SimUser, has_query: bool, action: Action) -> float:
        """The hidden probability that ``user``'s request ends in a click under ``action``."""
        key = (user.user_id, has_query, action)
        hit = self._mu.get(key)
        if hit is not None:
            return hit
        cell = (user.bucket, has_query)
        logit = self.route_effect[cell][action.route] + user.shift
        if action.rerank:
            logit += self.rerank_effect[cell]
        if action.fusion is not None:
            best = BEST_CONTENT_WEIGHT[user.bucket]
            logit -= 0.3 * abs(math.log(max(action.fusion.content_weight, 1e-3) / best))
        taste = random.Random(f"{user.taste_seed}:{has_query}:{action.label}")
        logit += taste.gauss(0, self.taste)
        value = sigmoid(logit)
        self._mu[key] = value
        return value

    def contexts(self) -> Iterable[tuple[float, SimUser, bool]]:
        """The exact request distribution: (probability, user, has_query)."""
        share = 1.0 / len(self.users)
        for user in self.users:
            yield share * (1 - user.query_rate), user, False
            yield share * user.query_rate, user, True

    def true_value(self, policy: Policy, bucket: WarmthBucket | None = None) -> float:
        """The expected reward per request under ``policy`` (of one bucket's requests)."""
        total = mass = 0.0
        for prob, user, q in self.contexts():
            if bucket is not None and user.bucket is not bucket:
                continue
            ctx = user.context(q, self.rerank_available)
            value = sum(
                p * self.mean_reward(user, q, a) for a, p in policy.probabilities(ctx).items()
            )
            total += prob * value
            mass += prob
        return total / mass if mass else math.nan

    def oracle(self, like: Policy) -> Policy:
        """The best deterministic rule per cell (among ``like``'s feasible actions),
        with ``like``'s exploration rates: the best policy of the world."""
        rules: dict[Cell, Rule] = {}
        for cell in CELLS:
            best: tuple[float, Rule] | None = None
            for route in (P, CO, CF, H):
                for rerank in (False, True):
                    rule = Rule(route, rerank, like.rules[cell].fusion)
                    value = self.true_value_of_rule(like, cell, rule)
                    if best is None or value > best[0]:
                        best = (value, rule)
            assert best is not None
            rules[cell] = best[1]
        return like.with_rules(rules)

    def true_value_of_rule(self, like: Policy, cell: Cell, rule: Rule) -> float:
        """Expected reward of ``cell``'s requests under a deterministic ``rule``."""
        target = like.with_rules({cell: rule}).with_epsilon({b: 0.0 for b in (C, M, W)})
        total = mass = 0.0
        for prob, user, q in self.contexts():
            if (user.bucket, q) != (cell.bucket, cell.query):
                continue
            ctx = user.context(q, self.rerank_available)
            total += prob * self.mean_reward(user, q, target.base(ctx))
            mass += prob
        return total / mass if mass else math.nan

    # ---- drawing requests --------------------------------------------------------------
    def draw(self, rng: random.Random) -> tuple[SimUser, bool]:
        """A request's user and whether it carries a query."""
        user = rng.choice(self.users)
        return user, rng.random() < user.query_rate

    def query_text(self, rng: random.Random) -> str:
        return rng.choice(QUERIES)

    def simulate(self, policy: Policy, n: int, seed: int) -> list[LoggedRequest]:
        """``n`` logged requests under ``policy`` without Kafka: the same decision code
        serving runs, rewards drawn from the hidden preferences."""
        rng = random.Random(seed)
        out = []
        for i in range(n):
            user, q = self.draw(rng)
            ctx = user.context(q, self.rerank_available)
            d = policy.decide(ctx, rng)
            reward = 1.0 if rng.random() < self.mean_reward(user, q, d.action) else 0.0
            out.append(
                LoggedRequest(f"{seed}-{i}", ctx, d.action, d.propensity, reward, policy.version)
            )
        return out

    def by_id(self) -> dict[str, SimUser]:
        return {u.user_id: u for u in self.users}


def bucket_values(world: PolicyWorld, policy: Policy) -> dict[str, float]:
    """True value overall and per bucket."""
    out = {"overall": world.true_value(policy)}
    for b in (C, M, W):
        out[b.value] = world.true_value(policy, b)
    return out


def shares(requests: Sequence[LoggedRequest]) -> dict[str, int]:
    """Requests per cell (for reports)."""
    out: dict[str, int] = {}
    for r in requests:
        out[r.context.cell.label] = out.get(r.context.cell.label, 0) + 1
    return out
