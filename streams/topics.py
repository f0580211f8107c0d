"""The topic catalogue: the one place where topic names, keys, value types,
partition counts and dead-letter topics are declared.

Nobody else writes a topic-name string: workers, the SDK, the CLI and tests take a
:class:`TopicSpec` from :class:`Topics`. Names are ``<topic_prefix><base>`` so a
tenant, a test or a benchmark run can get a fresh, isolated set.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from recsys.records import (
    CatalogChange,
    FeedbackExample,
    ItemEnriched,
    LlmInvolvement,
    Record,
    RecRequest,
    RecResponse,
    UserEvent,
)
from streams.settings import Settings

__all__ = ["DLQ_SUFFIX", "TopicSpec", "Topics"]

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, what its key and value are, and how it is created."""

    base: str
    name: str
    key: str
    value: type[Record] | None
    partitions: int
    description: str
    config: dict[str, str] = field(default_factory=dict)
    dlq: TopicSpec | None = None

    @property
    def subject(self) -> str:
        """Schema-registry subject of the value (TopicNameStrategy)."""
        return f"{self.name}-value"

    @property
    def is_dlq(self) -> bool:
        """True for a dead-letter topic (raw bytes, no schema)."""
        return self.value is None

    def __str__(self) -> str:
        return self.name


class Topics:
    """All topics of one deployment, named from the settings."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.topic_prefix
        user_p = settings.user_partitions
        cat_p = settings.catalog_partitions
        log_p = settings.log_partitions
        self.catalog_changes = self._spec(
            "catalog.changes",
            "item_id",
            CatalogChange,
            cat_p,
            "Upserts and deletes of catalog items, with a monotonic version.",
        )
        self.catalog_enriched = self._spec(
            "catalog.enriched",
            "item_id",
            ItemEnriched,
            cat_p,
            "Emitted after an item version is in pgvector: provenance of text and vectors.",
        )
        self.user_events = self._spec(
            "user.events",
            "user_id",
            UserEvent,
            user_p,
            "What users did; co-partitioned with rec.requests.",
        )
        self.rec_requests = self._spec(
            "rec.requests",
            "user_id",
            RecRequest,
            user_p,
            "Recommendation requests; co-partitioned with user.events.",
        )
        self.rec_responses = self._spec(
            "rec.responses",
            "user_id",
            RecResponse,
            user_p,
            "Ranked items with route, warmth, explanations, versions and latency.",
        )
        self.llm_log = self._spec(
            "rec.llm-log",
            "request_id",
            LlmInvolvement,
            log_p,
            "One record per LLM use, or per decision not to use one.",
        )
        self.feedback_examples = self._spec(
            "feedback.examples",
            "user_id",
            FeedbackExample,
            user_p,
            "Impressions joined with later outcomes, with the treatment flags.",
        )

    def _spec(
        self, base: str, key: str, value: type[Record], partitions: int, description: str
    ) -> TopicSpec:
        dlq = TopicSpec(
            base=base + DLQ_SUFFIX,
            name=self.prefix + base + DLQ_SUFFIX,
            key=f"original key ({key})",
            value=None,
            partitions=1,
            description=f"Dead letters of {base}: original bytes plus error headers.",
        )
        return TopicSpec(
            base=base,
            name=self.prefix + base,
            key=key,
            value=value,
            partitions=partitions,
            description=description,
            dlq=dlq,
        )

    def data_topics(self) -> list[TopicSpec]:
        """The seven value topics, in pipeline order."""
        return [
            self.catalog_changes,
            self.catalog_enriched,
            self.user_events,
            self.rec_requests,
            self.rec_responses,
            self.llm_log,
            self.feedback_examples,
        ]

    def __iter__(self) -> Iterator[TopicSpec]:
        """Every topic to create: value topics and their dead-letter topics."""
        for spec in self.data_topics():
            yield spec
            if spec.dlq is not None:
                yield spec.dlq

    def by_name(self, name: str) -> TopicSpec:
        """Look a topic up by its full name."""
        for spec in self:
            if spec.name == name:
                return spec
        raise KeyError(f"no topic named {name!r} in the catalogue")

    def co_partitioned(self) -> list[tuple[TopicSpec, ...]]:
        """Groups of topics that must have equal partition counts (same key, same user)."""
        return [(self.user_events, self.rec_requests)]
