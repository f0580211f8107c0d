"""The declared space of candidate policies, and named variants of a policy.

A candidate policy is a rule per cell drawn from the space: a route, whether the LLM
reranks, and — for HYBRID — a fusion arm (the cell's current weights or one of the
declared extra arms). A policy's value is the request-weighted sum of its cells'
values, so the best policy of the space is the best rule of each cell; the learner
estimates every (cell, rule) pair instead of enumerating the product of six cells.

Named variants (:func:`named_variants`) are whole policies derived from one policy —
the same routes without the LLM, with the LLM wherever it is feasible, one route for
everyone — that ``learn-policy`` reports beside the learned one and ``evaluate
--target`` estimates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys.policy.model import CELLS, Cell, Fusion, Policy, Rule
from recsys.records import Route

__all__ = ["ALL_ROUTES", "CandidateSpace", "named_variants"]

ALL_ROUTES = (Route.CF, Route.CONTENT, Route.HYBRID, Route.POPULARITY)


@dataclass(frozen=True)
class CandidateSpace:
    """What ``learn-policy`` may choose per cell.

    Attributes:
        routes: routes a cell may use.
        rerank: rerank decisions a cell may take (``(False,)``: never the LLM).
        fusions: HYBRID fusion arms besides each cell's current one; the learned policy
            keeps exploring them, so that later logs can support them.
        cells: the cells that may change (the others keep the current rule).
    """

    routes: tuple[Route, ...] = ALL_ROUTES
    rerank: tuple[bool, ...] = (False, True)
    fusions: tuple[Fusion, ...] = ()
    cells: tuple[Cell, ...] = field(default=CELLS)

    def rules(self, cell: Cell, current: Rule) -> list[Rule]:
        """Candidate rules of ``cell`` (the current rule first)."""
        if cell not in self.cells:
            return [current]
        out = [current]
        arms = tuple(dict.fromkeys([current.fusion, *self.fusions]))
        for route in self.routes:
            for fusion in arms if route is Route.HYBRID else (current.fusion,):
                for rerank in self.rerank:
                    rule = Rule(route, rerank, fusion)
                    if rule not in out:
                        out.append(rule)
        return out

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CandidateSpace:
        """``{"routes": [...], "rerank": [false, true], "fusions": [{"content_weight":
        1, "popularity_weight": 0.5}], "cells": ["WARM/no-query", ...]}`` (all optional).

        Raises:
            ValueError: an unknown route, cell or a malformed arm.
        """
        unknown = set(doc) - {"routes", "rerank", "fusions", "cells"}
        if unknown:
            raise ValueError(f"unknown keys in the candidate space: {sorted(unknown)}")
        try:
            return cls(
                routes=tuple(Route(r) for r in doc.get("routes", [r.value for r in ALL_ROUTES])),
                rerank=tuple(bool(b) for b in doc.get("rerank", [False, True])),
                fusions=tuple(
                    Fusion(float(f["content_weight"]), float(f["popularity_weight"]))
                    for f in doc.get("fusions", [])
                ),
                cells=tuple(Cell.parse(c) for c in doc.get("cells", [c.label for c in CELLS])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed candidate space: {exc}") from exc

    def as_json(self) -> dict[str, Any]:
        return {
            "routes": [r.value for r in self.routes],
            "rerank": list(self.rerank),
            "fusions": [
                {"content_weight": f.content_weight, "popularity_weight": f.popularity_weight}
                for f in self.fusions
            ],
            "cells": [c.label for c in self.cells],
        }


def named_variants(policy: Policy, prefix: str = "router") -> dict[str, Policy]:
    """``router`` (the policy), ``router-no-llm``, ``router-llm-eligible``, and
    ``cf-only``, ``content-only``, ``hybrid-only``, ``popularity-only`` (one route in
    every cell, the policy's rerank decisions and fusion weights), all with the policy's
    exploration rates."""
    out = {prefix: policy}
    out[f"{prefix}-no-llm"] = policy.with_rules(
        {c: Rule(r.route, False, r.fusion) for c, r in policy.rules.items()}
    )
    out[f"{prefix}-llm-eligible"] = policy.with_rules(
        {c: Rule(r.route, True, r.fusion) for c, r in policy.rules.items()}
    )
    for route in ALL_ROUTES:
        out[f"{route.value.lower()}-only"] = policy.with_rules(
            {c: Rule(route, r.rerank, r.fusion) for c, r in policy.rules.items()}
        )
    return out
