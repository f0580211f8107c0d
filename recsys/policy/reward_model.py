"""The reward model of the doubly robust estimator: ridge regression on logged features.

Features of a (context, action) pair: the cell, the route, the rerank decision, the
fusion arm, whether the user had history and whether the LLM was available, and the
interactions that matter for routing (cell by route, cell by rerank, route by rerank,
cell by fusion arm). Ridge (L2) keeps unseen or rare combinations near their main
effects instead of fitting noise; predictions are clipped to the reward's range [0, 1].
A feature never seen in training contributes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.policy.logged import LoggedRequest
from recsys.policy.model import Action, Context

__all__ = ["RidgeRewardModel", "features"]


def features(ctx: Context, action: Action) -> list[str]:
    """Names of the binary features that are on for ``(ctx, action)``."""
    cell = ctx.cell.label
    route = action.route.value
    rerank = "rerank" if action.rerank else "no-rerank"
    out = [
        "bias",
        f"cell={cell}",
        f"route={route}",
        f"rerank={rerank}",
        f"history={ctx.has_history}",
        f"llm={ctx.rerank_available}",
        f"cell={cell}|route={route}",
        f"cell={cell}|rerank={rerank}",
        f"route={route}|rerank={rerank}",
    ]
    if action.fusion is not None:
        out += [f"fusion={action.fusion.label}", f"cell={cell}|fusion={action.fusion.label}"]
    return out


class RidgeRewardModel:
    """q̂(x, a): a ridge regression of the reward on :func:`features`."""

    def __init__(self, ridge: float = 1.0) -> None:
        self.ridge = ridge
        self.index: dict[str, int] = {}
        self.coef: np.ndarray = np.zeros(0)
        self.mean = 0.0
        self._cache: dict[tuple[Context, Action], float] = {}

    def fit(self, requests: Sequence[LoggedRequest]) -> RidgeRewardModel:
        """Fit on logged requests (their own action and reward, unweighted)."""
        self.index = {}
        rows = []
        for req in requests:
            cols = []
            for name in features(req.context, req.action):
                cols.append(self.index.setdefault(name, len(self.index)))
            rows.append(cols)
        rewards = np.array([req.reward for req in requests], dtype=float)
        self.mean = float(rewards.mean()) if len(rewards) else 0.0
        x = np.zeros((len(requests), len(self.index)))
        for i, cols in enumerate(rows):
            x[i, cols] = 1.0
        if len(self.index) == 0:
            self.coef = np.zeros(0)
        else:
            gram = x.T @ x + self.ridge * np.eye(len(self.index))
            self.coef = np.linalg.solve(gram, x.T @ (rewards - self.mean))
        self._cache = {}
        return self

    def __call__(self, ctx: Context, action: Action) -> float:
        """The predicted reward, in [0, 1]."""
        key = (ctx, action)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        total = self.mean + sum(
            self.coef[self.index[name]] for name in features(ctx, action) if name in self.index
        )
        value = float(min(1.0, max(0.0, total)))
        self._cache[key] = value
        return value
