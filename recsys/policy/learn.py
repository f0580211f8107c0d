"""Learning the next policy from logged requests, and deciding whether it is safe to ship.

The procedure (what ``streamrec learn-policy`` runs):

1. **Split** the logged requests by a hash of their id (and ``seed``): a *selection*
   part and a *holdout* part (``holdout`` of them). Choosing and judging on the same
   data would overstate the winner (the best of many noisy estimates is biased up).
2. **Choose per cell** on the selection part: every candidate rule of the space is
   estimated as a deterministic rule for that cell (SNIPS, and DR with a reward model
   cross-fitted over two folds of the selection part). A rule is *estimable* only when
   the logs took its action in every kind of context of the cell (with history or not,
   LLM available or not) and at least ``min_matches`` times in all; the others are
   named with the reason (e.g. the logging policy's ε was 0 there). The best estimable
   rule by ``estimator`` replaces the cell's current rule only if the lower bound of its
   interval (at ``cell_confidence``) is above the current rule's estimate: a cell does
   not switch on noise.
3. **Judge on the holdout**: the current policy, the learned one (the chosen rules with
   the new exploration rates) and named variants are estimated with IPS, SNIPS and DR
   (reward model fitted on the selection part), with bootstrap intervals, overall and
   per warmth bucket.
4. **Safe deployment**: the learned policy replaces the current one only if it differs
   and the lower bound of its interval is above the current policy's point estimate
   (both by ``estimator``, on the holdout); otherwise the result says why it kept the
   current one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.policy.estimators import Estimate, Terms, estimate, terms
from recsys.policy.logged import LoggedRequest
from recsys.policy.model import BUCKETS, CELLS, Cell, Context, Policy, Rule
from recsys.policy.reward_model import RidgeRewardModel
from recsys.policy.space import CandidateSpace, named_variants
from recsys.records import WarmthBucket

__all__ = ["CandidateRow", "LearnConfig", "LearnResult", "learn", "split"]

ESTIMATORS = ("snips", "dr")


@dataclass(frozen=True)
class LearnConfig:
    """Knobs of the procedure (see the module docstring)."""

    estimator: str = "snips"
    holdout: float = 0.5
    resamples: int = 500
    confidence: float = 0.95
    #: a cell switches rule only if the new rule's lower bound at this confidence (on the
    #: selection part) beats the current rule's estimate there
    cell_confidence: float = 0.8
    min_matches: int = 3
    seed: int = 0
    ridge: float = 1.0
    #: exploration rates of the learned policy (None: the current policy's)
    epsilon: Mapping[WarmthBucket, float] | None = None

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be snips or dr, not {self.estimator!r}")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        for name in ("confidence", "cell_confidence"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value}")


@dataclass(frozen=True)
class CandidateRow:
    """One candidate rule of one cell, estimated on the selection part."""

    cell: str
    rule: str
    current: bool
    chosen: bool
    estimate: Estimate
    estimable: bool
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "rule": self.rule,
            "current": self.current,
            "chosen": self.chosen,
            "estimable": self.estimable,
            "reason": self.reason,
            **self.estimate.as_json(),
        }


@dataclass
class LearnResult:
    """Everything the report shows, and the decision."""

    config: LearnConfig
    n_requests: int
    n_selection: int
    n_holdout: int
    current: Policy
    learned: Policy
    candidates: list[CandidateRow]
    estimates: dict[str, dict[str, Estimate]]  # policy name → "overall"/bucket → estimate
    deploy: bool
    reason: str
    unsupported: list[str] = field(default_factory=list)
    logged_mean: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "config": {
                "estimator": self.config.estimator,
                "holdout": self.config.holdout,
                "resamples": self.config.resamples,
                "confidence": self.config.confidence,
                "cell_confidence": self.config.cell_confidence,
                "min_matches": self.config.min_matches,
                "seed": self.config.seed,
                "ridge": self.config.ridge,
            },
            "n_requests": self.n_requests,
            "n_selection": self.n_selection,
            "n_holdout": self.n_holdout,
            "logged_mean_reward": self.logged_mean,
            "current": {"version": self.current.version, **self.current.definition()},
            "learned": self.learned.definition(),
            "changed_cells": changed_cells(self.current, self.learned),
            "candidates": [c.as_json() for c in self.candidates],
            "estimates": {
                name: {k: e.as_json() for k, e in parts.items()}
                for name, parts in self.estimates.items()
            },
            "deploy": self.deploy,
            "reason": self.reason,
            "unsupported": self.unsupported,
        }


def changed_cells(a: Policy, b: Policy) -> dict[str, list[str]]:
    """Cells whose rule differs: ``{cell: [rule in a, rule in b]}``."""
    return {
        c.label: [a.rules[c].label, b.rules[c].label] for c in CELLS if a.rules[c] != b.rules[c]
    }


def split(
    requests: Sequence[LoggedRequest], holdout: float, seed: int
) -> tuple[list[LoggedRequest], list[LoggedRequest]]:
    """(selection, holdout) by a seeded hash of the request id (stable across runs)."""
    sel: list[LoggedRequest] = []
    hold: list[LoggedRequest] = []
    for req in requests:
        digest = hashlib.blake2b(f"{seed}:{req.request_id}".encode(), digest_size=8).digest()
        (hold if int.from_bytes(digest) / 2**64 < holdout else sel).append(req)
    return sel, hold


def _one_cell(current: Policy, cell: Cell, rule: Rule) -> Policy:
    return current.with_rules({cell: rule}).with_epsilon({b: 0.0 for b in BUCKETS})


def _estimate_policy(
    requests: Sequence[LoggedRequest],
    policy: Policy,
    q: RidgeRewardModel | None,
    cfg: LearnConfig,
    rng: np.random.Generator,
    resamples: int,
) -> Estimate:
    t = terms(requests, policy.probability, q, policy.actions if q is not None else None)
    return estimate(t, resamples=resamples, confidence=cfg.confidence, rng=rng)


def _support(
    requests: Sequence[LoggedRequest], policy: Policy, min_matches: int
) -> tuple[bool, str | None, int]:
    """Whether the logs took the policy's action in every kind of context it meets."""
    groups: dict[Context, list[LoggedRequest]] = {}
    for r in requests:
        groups.setdefault(r.context, []).append(r)
    missing = []
    total = 0
    for ctx, reqs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        action = policy.base(ctx)
        hits = sum(1 for r in reqs if r.action == action)
        total += hits
        if hits == 0 and len(reqs) >= max(1, len(requests) // 100):
            deterministic = all(r.propensity >= 1.0 for r in reqs)
            why = " (the logging policy did not explore there: ε = 0)" if deterministic else ""
            history = "history" if ctx.has_history else "no history"
            missing.append(f"{action.label} never logged with {history}{why}")
    if missing:
        return False, "; ".join(missing), total
    if total < min_matches:
        return False, f"logged only {total} time(s), fewer than {min_matches}", total
    return True, None, total


def learn(
    requests: Sequence[LoggedRequest],
    current: Policy,
    space: CandidateSpace | None = None,
    cfg: LearnConfig | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> LearnResult:
    """Run the procedure; ``progress(stage, done, total)`` is told how far it is."""
    space = space or CandidateSpace()
    cfg = cfg or LearnConfig()
    rng = np.random.default_rng(cfg.seed)
    selection, holdout = split(requests, cfg.holdout, cfg.seed)
    by_cell: dict[Cell, list[LoggedRequest]] = {c: [] for c in CELLS}
    for r in selection:
        by_cell[r.context.cell].append(r)
    folds = [list(selection[0::2]), list(selection[1::2])]
    fold_models = [
        RidgeRewardModel(cfg.ridge).fit(folds[1]),
        RidgeRewardModel(cfg.ridge).fit(folds[0]),
    ]
    fold_of = {r.request_id: i % 2 for i, r in enumerate(selection)}
    rows: list[CandidateRow] = []
    chosen: dict[Cell, Rule] = {}
    unsupported: list[str] = []
    total_rules = sum(len(space.rules(c, current.rules[c])) for c in CELLS)
    done = 0
    for cell in CELLS:
        reqs = by_cell[cell]
        parts = [[r for r in reqs if fold_of[r.request_id] == f] for f in (0, 1)]
        best: tuple[float, Rule] | None = None
        cell_rows = []
        for rule in space.rules(cell, current.rules[cell]):
            target = _one_cell(current, cell, rule)
            est = _pooled(parts, target, fold_models, cfg, rng)
            ok, why, _ = _support(reqs, target, cfg.min_matches) if reqs else (False, "no logs", 0)
            value = est.value(cfg.estimator)
            if ok and value is not None and (best is None or value > best[0]):
                best = (value, rule)
            cell_rows.append((rule, est, ok, why))
            done += 1
            if progress:
                progress("select", done, total_rules)
        chosen[cell] = _pick(cell_rows, best, current.rules[cell], cfg.estimator)
        for rule, est, ok, why in cell_rows:
            rows.append(
                CandidateRow(
                    cell.label,
                    rule.label,
                    rule == current.rules[cell],
                    rule == chosen[cell],
                    est,
                    ok,
                    why,
                )
            )
            if not ok:
                unsupported.append(f"{cell.label}: {rule.label}: {why}")
    learned = current.with_rules(chosen)
    if cfg.epsilon is not None:
        learned = learned.with_epsilon(cfg.epsilon)
    if space.fusions:
        learned = Policy(
            learned.rules,
            learned.epsilon,
            tuple(dict.fromkeys([*current.explore_fusions, *space.fusions])),
        )
    estimates, missing = _judge(holdout, selection, current, learned, cfg, rng, progress)
    unsupported += missing
    deploy, reason = _decide(current, learned, estimates, cfg)
    mean = float(np.mean([r.reward for r in requests])) if requests else None
    return LearnResult(
        cfg,
        len(requests),
        len(selection),
        len(holdout),
        current,
        learned,
        rows,
        estimates,
        deploy,
        reason,
        unsupported,
        mean,
    )


def _pick(
    rows: list[tuple[Rule, Estimate, bool, str | None]],
    best: tuple[float, Rule] | None,
    current: Rule,
    estimator: str,
) -> Rule:
    """The best estimable rule, if it beats an estimable current rule convincingly: its
    lower bound (at ``cell_confidence``) above the current rule's estimate."""
    if best is None or best[1] == current:
        return current
    mine = next((est for rule, est, ok, _ in rows if rule == current and ok), None)
    if mine is None or mine.value(estimator) is None:
        return best[1]  # the current rule cannot be judged here: the best estimable one
    winner = next(est for rule, est, _, _ in rows if rule == best[1])
    low = winner.lower(estimator)
    return best[1] if low is not None and low > (mine.value(estimator) or 0.0) else current


def _pooled(
    parts: list[list[LoggedRequest]],
    target: Policy,
    models: list[RidgeRewardModel],
    cfg: LearnConfig,
    rng: np.random.Generator,
) -> Estimate:
    """One estimate over both folds, each fold's DR terms from the other fold's model."""
    t0 = terms(parts[0], target.probability, models[0], target.actions)
    t1 = terms(parts[1], target.probability, models[1], target.actions)
    assert t0.dr_terms is not None and t1.dr_terms is not None
    joined = Terms(
        np.concatenate([t0.weights, t1.weights]),
        np.concatenate([t0.rewards, t1.rewards]),
        np.concatenate([t0.dr_terms, t1.dr_terms]),
    )
    return estimate(
        joined, resamples=min(cfg.resamples, 200), confidence=cfg.cell_confidence, rng=rng
    )


def _judge(
    holdout: list[LoggedRequest],
    selection: list[LoggedRequest],
    current: Policy,
    learned: Policy,
    cfg: LearnConfig,
    rng: np.random.Generator,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, dict[str, Estimate]], list[str]]:
    q = RidgeRewardModel(cfg.ridge).fit(selection)
    policies = {"current": current, "learned": learned}
    for name, variant in named_variants(current).items():
        if name != "router":
            policies[name] = variant
    out: dict[str, dict[str, Estimate]] = {}
    missing = []
    for n, (name, policy) in enumerate(policies.items(), start=1):
        parts = {"overall": holdout}
        for bucket in BUCKETS:
            parts[bucket.value] = [r for r in holdout if r.context.bucket is bucket]
        out[name] = {
            key: _estimate_policy(reqs, policy, q, cfg, rng, cfg.resamples)
            for key, reqs in parts.items()
        }
        if out[name]["overall"].matched == 0:
            missing.append(f"{name}: no logged request took any of its actions")
        else:
            ok, why, _ = _support(holdout, policy.with_epsilon({b: 0.0 for b in BUCKETS}), 1)
            if not ok:
                missing.append(f"{name}: only partly supported ({why}); its estimate is biased")
        if progress:
            progress("estimate", n, len(policies))
    return out, missing


def _decide(
    current: Policy,
    learned: Policy,
    estimates: Mapping[str, Mapping[str, Estimate]],
    cfg: LearnConfig,
) -> tuple[bool, str]:
    est = cfg.estimator.upper()
    if learned.definition() == current.definition():
        return False, "kept the current policy: its rules are the best estimable candidates"
    cur = estimates["current"]["overall"].value(cfg.estimator)
    low = estimates["learned"]["overall"].lower(cfg.estimator)
    point = estimates["learned"]["overall"].value(cfg.estimator)
    if cur is None:
        return False, f"kept the current policy: its {est} value cannot be estimated on the holdout"
    if low is None or point is None:
        return False, f"kept the current policy: the learned one's {est} interval is undefined"
    level = round(cfg.confidence * 100)
    if low > cur:
        return True, (
            f"deployed: the learned policy's {level}% lower bound {low:.4f} ({est}, holdout) "
            f"is above the current policy's estimate {cur:.4f}"
        )
    return False, (
        f"kept the current policy: the learned policy's {level}% lower bound {low:.4f} "
        f"({est} {point:.4f}, holdout) does not beat the current policy's estimate {cur:.4f}"
    )
