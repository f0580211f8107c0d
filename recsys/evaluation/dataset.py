"""The data an evaluation runs on, loaded from the archive (or built in memory).

Loading de-duplicates what at-least-once delivery may repeat: responses by
(request_id, policy), feedback examples by ``example_id``, LLM-log records by
``record_id``, events by (user_id, event_id).

``EXPIRED`` answers (requests the serve worker shed: nothing was shown) are set apart in
:attr:`EvaluationData.expired`, not evaluated as empty lists; a counterfactual answer to
a request production shed is dropped too, so that every system is judged on the same
requests (those production actually answered).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from recsys.archive import list_files, read_archive
from recsys.exceptions import DataNotFound
from recsys.records import (
    EventType,
    FeedbackExample,
    LlmInvolvement,
    Record,
    RecRequest,
    RecResponse,
    UserEvent,
)

__all__ = [
    "ArchiveTopics",
    "EvaluationData",
    "load_categories",
    "positive_event",
    "relevance_from_events",
    "relevance_from_examples",
    "reward_of",
]

R = TypeVar("R", bound=Record)

POSITIVE_RATING = 4.0


@dataclass(frozen=True)
class ArchiveTopics:
    """Folder names (full topic names) of the archived topics."""

    responses: str
    feedback_examples: str
    llm_log: str
    requests: str
    user_events: str


def positive_event(event: UserEvent) -> bool:
    """CLICK, CART, PURCHASE, or a RATING of at least 4."""
    if event.event_type in (EventType.CLICK, EventType.CART, EventType.PURCHASE):
        return True
    return (
        event.event_type is EventType.RATING
        and event.rating is not None
        and event.rating >= POSITIVE_RATING
    )


def reward_of(example: FeedbackExample, kind: str = "any") -> bool:
    """Whether an example counts as a success: ``any``, ``click`` or ``purchase``."""
    if kind == "click":
        return example.clicked
    if kind == "purchase":
        return example.purchased
    if kind == "any":
        return (
            example.clicked
            or example.carted
            or example.purchased
            or (example.rating is not None and example.rating >= POSITIVE_RATING)
        )
    raise ValueError(f"unknown reward {kind!r}; choose any, click or purchase")


def _unique(records: Iterable[R], key: Any) -> list[R]:
    seen: dict[Any, R] = {}
    for r in records:
        seen.setdefault(key(r), r)
    return list(seen.values())


@dataclass
class EvaluationData:
    """Logged responses, counterfactual responses, outcomes and side information."""

    responses: list[RecResponse]
    examples: list[FeedbackExample] = field(default_factory=list)
    llm_log: list[LlmInvolvement] = field(default_factory=list)
    requests: dict[str, RecRequest] = field(default_factory=dict)
    events: list[UserEvent] | None = None
    counterfactual: dict[str, list[RecResponse]] = field(default_factory=dict)
    categories: Mapping[str, list[str]] | None = None
    vectors: Mapping[str, np.ndarray] | None = None
    #: Logged ``EXPIRED`` answers of requests that got no real answer (set apart, counted).
    expired: list[RecResponse] = field(default_factory=list)

    def __post_init__(self) -> None:
        shown = [r for r in self.responses if not r.expired]
        answered = {r.request_id for r in shown}
        self.expired = _unique(
            [*self.expired, *(r for r in self.responses if r.expired)],
            lambda r: r.request_id,
        )
        self.expired = [r for r in self.expired if r.request_id not in answered]
        shed = {r.request_id for r in self.expired}
        self.responses = _unique(shown, lambda r: (r.request_id, r.policy))
        self.examples = _unique(self.examples, lambda e: e.example_id)
        self.llm_log = _unique(self.llm_log, lambda r: r.record_id)
        if self.events is not None:
            self.events = _unique(self.events, lambda e: (e.user_id, e.event_id))
        self.counterfactual = {
            name: _unique(
                (r for r in rs if not r.expired and r.request_id not in shed),
                lambda r: (r.request_id, r.policy),
            )
            for name, rs in self.counterfactual.items()
        }

    @classmethod
    def from_archive(
        cls,
        root: Path,
        topics: ArchiveTopics,
        *,
        policies: Iterable[str] = (),
        counterfactual_root: Path | None = None,
    ) -> EvaluationData:
        """Load everything the archive under ``root`` holds for an evaluation.

        Raises:
            DataNotFound: no archived responses (or a named policy has no output).
        """
        root = Path(root)
        if not list_files(root, topics.responses):
            raise DataNotFound(
                f"no archived responses under {root / topics.responses}; run the archive "
                "worker (or point --archive at an archive folder)"
            )

        def load(topic: str, model: type[R], base: Path = root) -> list[R]:
            return [model.model_validate(m.value) for m in read_archive(base, topic)]

        events = (
            load(topics.user_events, UserEvent) if list_files(root, topics.user_events) else None
        )
        cf_root = counterfactual_root or root / "counterfactual"
        counterfactual = {}
        for name in policies:
            folder = cf_root / name
            if not list_files(folder, topics.responses):
                raise DataNotFound(
                    f"no counterfactual responses of policy {name!r} under {folder}; run "
                    f"`streamrec replay rec.requests --policy {name}` first"
                )
            counterfactual[name] = load(topics.responses, RecResponse, folder)
        return cls(
            responses=load(topics.responses, RecResponse),
            examples=load(topics.feedback_examples, FeedbackExample),
            llm_log=load(topics.llm_log, LlmInvolvement),
            requests={r.request_id: r for r in load(topics.requests, RecRequest)},
            events=events,
            counterfactual=counterfactual,
        )


def relevance_from_events(
    responses: Iterable[RecResponse], events: Iterable[UserEvent], window_s: float
) -> dict[str, set[str]]:
    """Per request: items the user acted on positively within the window after it."""
    by_user: dict[str, list[UserEvent]] = {}
    for e in events:
        if e.item_id is not None and positive_event(e):
            by_user.setdefault(e.user_id, []).append(e)
    out: dict[str, set[str]] = {}
    for r in responses:
        start = r.produced_at.timestamp()
        items = {
            e.item_id
            for e in by_user.get(r.user_id, [])
            if e.item_id is not None and start <= e.occurred_at.timestamp() <= start + window_s
        }
        out[r.request_id] = items
    return out


def relevance_from_examples(
    examples: Iterable[FeedbackExample], kind: str = "any"
) -> dict[str, set[str]]:
    """Per request: shown items with a successful outcome (feedback examples)."""
    out: dict[str, set[str]] = {}
    for e in examples:
        items = out.setdefault(e.request_id, set())
        if reward_of(e, kind):
            items.add(e.item_id)
    return out


def load_categories(path: Path) -> dict[str, list[str]]:
    """Item categories from a MovieLens folder (movies.csv), a ``.json`` map, or a CSV
    with ``item_id`` and ``categories`` (``|``-separated) columns."""
    path = Path(path)
    if path.is_dir():
        path = path / "movies.csv"
    if not path.is_file():
        raise DataNotFound(f"no category file at {path}")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return {str(k): list(v) for k, v in data.items()}
    out: dict[str, list[str]] = {}
    with path.open(newline="", encoding="utf-8") as fo:
        for row in csv.DictReader(fo):
            item = row.get("item_id") or row.get("movieId")
            cats = row.get("categories") or row.get("genres") or ""
            if item:
                out[item] = [c for c in cats.split("|") if c and c != "(no genres listed)"]
    return out
