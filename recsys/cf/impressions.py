"""What ``feedback.examples`` adds to CF training: what was shown, and what happened.

User events say what a user did; they do not say what the user was *shown and passed
over*, nor how likely the policy was to show it. The feedback join's examples
(:class:`~recsys.records.FeedbackExample`: one per shown item, with its outcome, the
route's logged propensity and whether an LLM shaped the response) do. With
:class:`FeedbackWeights` they change the training matrix three ways:

* **Weak negatives.** A shown item the user did not act on (no click, cart, purchase
  or rating ≥ 4; a dismissal or a low rating counts as not acted on) becomes a cell with
  preference 0 and confidence ``1 + alpha·negative`` — implicit's ALS reads a negative
  matrix entry that way (Hu, Koren & Volinsky's model with an observed "no"). Impressions
  of the same item add up (capped like positives); a cell the user has positive events
  on stays positive.
* **Inverse-propensity weights** (``ips_clip`` > 0): each example's contribution is
  weighted by ``min(1 / propensity, ips_clip)``, normalised so that the examples'
  weights average 1 — outcomes of rarely taken routes count for the exposure they
  lacked. A positive cell that impressions led to (an acted-on example) is scaled by the
  mean weight of those examples; cells no impression led to are left alone. The logged
  propensity is the route's, not the item's exposure probability: it is what the log
  has.
* **LLM-touched impressions** (``llm_weight``): the *weak* outcomes of an example whose
  response an LLM shaped — a click or cart that no purchase or rating ≥ 4 confirmed, and
  not acting at all — are multiplied by it: 1 treats them like the others, 0 ignores
  them, anything else weighs them apart. An LLM's wording can draw a click; a purchase
  or a good rating is the user's own verdict, so confirmed outcomes always count.

Defaults and the measurement that chose them: ``docs/collaborative-filtering.md``
(``benchmarks/cf_feedback.py``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from recsys.cf.weights import POSITIVE_RATING
from recsys.records import FeedbackExample

__all__ = ["FeedbackSignals", "FeedbackWeights", "acted_on", "confirmed"]


@dataclass(frozen=True)
class FeedbackWeights:
    """How much what was shown counts (see the module docstring).

    Attributes:
        negative: weight of a shown item not acted on (0 = no weak negatives).
        ips_clip: cap of the inverse-propensity weight (0 = no propensity weighting).
        llm_weight: multiplier of an LLM-touched impression's weak outcomes (an
            unconfirmed click or cart, or no action).
    """

    negative: float = 0.0
    ips_clip: float = 0.0
    llm_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.negative < 0 or self.llm_weight < 0:
            raise ValueError("negative and llm_weight must be >= 0")
        if self.ips_clip != 0 and self.ips_clip < 1:
            raise ValueError("ips_clip must be 0 (off) or at least 1")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the model's recorded parameters."""
        return asdict(self)


def acted_on(example: FeedbackExample) -> bool:
    """A click, cart, purchase or a rating of at least 4 followed the impression."""
    if example.clicked or example.carted or example.purchased:
        return True
    return example.rating is not None and example.rating >= POSITIVE_RATING


def confirmed(example: FeedbackExample) -> bool:
    """A purchase or a rating of at least 4 followed: more than a click."""
    return example.purchased or (example.rating is not None and example.rating >= POSITIVE_RATING)


class FeedbackSignals:
    """Accumulates examples; :meth:`negatives` and :meth:`scales` feed the matrix builder."""

    def __init__(self, weights: FeedbackWeights) -> None:
        self.weights = weights
        self.n_examples = 0
        self.n_acted_on = 0
        self.n_llm = 0
        self._ips_sum = 0.0
        self._negative: dict[tuple[str, str], float] = defaultdict(float)
        self._positive: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._seen: set[str] = set()

    def _ips(self, propensity: float) -> float:
        clip = self.weights.ips_clip
        if clip <= 0:
            return 1.0
        return min(1.0 / propensity, clip) if propensity > 0 else clip

    def add(self, example: FeedbackExample) -> None:
        """Count one example (an example id seen before is a redelivery: ignored)."""
        if example.example_id in self._seen:
            return
        self._seen.add(example.example_id)
        self.n_examples += 1
        ips = self._ips(example.propensity)
        self._ips_sum += ips
        weak = ips * (self.weights.llm_weight if example.llm_used else 1.0)
        self.n_llm += example.llm_used
        key = (example.user_id, example.item_id)
        if acted_on(example):
            self.n_acted_on += 1
            self._positive[key].append(ips if confirmed(example) else weak)
        elif self.weights.negative > 0:
            self._negative[key] += weak

    def add_all(self, examples: Iterable[FeedbackExample]) -> None:
        for example in examples:
            self.add(example)

    @property
    def _norm(self) -> float:
        """Divides the IPS weights so that they average 1 over the examples."""
        if self.weights.ips_clip <= 0 or not self.n_examples:
            return 1.0
        return self._ips_sum / self.n_examples

    def negatives(self) -> dict[tuple[str, str], float]:
        """(user, item) → weak-negative weight (before the cap)."""
        norm = self._norm
        return {k: self.weights.negative * v / norm for k, v in self._negative.items() if v > 0}

    def scales(self) -> dict[tuple[str, str], float]:
        """(user, item) → factor for the positive cells impressions led to (1 = as is)."""
        norm = self._norm
        out = {}
        for key, weights in self._positive.items():
            factor = sum(weights) / len(weights) / norm
            if factor != 1.0:
                out[key] = factor
        return out

    def summary(self) -> dict[str, Any]:
        """Counts for the run's log line and model record."""
        return {
            "examples": self.n_examples,
            "acted_on": self.n_acted_on,
            "llm_touched": self.n_llm,
            "ignored_cells": len(self._negative),
            "weights": self.weights.as_dict(),
        }
