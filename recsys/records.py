"""Typed records for every topic value.

``schemas/*.avsc`` is the single source of truth; these pydantic models are the
Python face of those schemas and are checked field by field against them at
start-up (``streams.schema_check``), so a model can never drift from its schema.
Value rules that Avro cannot express (a RATING needs a rating, k is 1..100) are
validators here: a message that decodes but breaks them is dead-lettered.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CatalogChange",
    "ChangeOp",
    "ConversationTurn",
    "DialogueAction",
    "DialogueReply",
    "EnrichmentStatus",
    "EventType",
    "Evidence",
    "EvidenceKind",
    "ExplanationSource",
    "FeedbackExample",
    "ItemEnriched",
    "LlmInvolvement",
    "LlmUseCase",
    "PreferenceSignal",
    "RecRequest",
    "RecResponse",
    "RecommendedItem",
    "Record",
    "ResponseStatus",
    "Route",
    "SignalKind",
    "UserEvent",
    "ValidationResult",
    "WarmthBucket",
    "new_id",
    "utcnow",
]

NonEmpty = Annotated[str, Field(min_length=1, max_length=512)]


def utcnow() -> datetime:
    """Now, timezone-aware, truncated to milliseconds (what Avro timestamp-millis keeps)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    """A fresh random id for requests, events and log records."""
    return uuid.uuid4().hex


class Record(BaseModel):
    """Base of every topic value: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    #: Full Avro name of the schema this model mirrors.
    avro_name: ClassVar[str]


class ChangeOp(enum.StrEnum):
    UPSERT = "UPSERT"
    DELETE = "DELETE"


class EnrichmentStatus(enum.StrEnum):
    ENRICHED = "ENRICHED"
    CACHED = "CACHED"
    LLM_OFF = "LLM_OFF"
    LLM_FAILED = "LLM_FAILED"
    UNCHANGED = "UNCHANGED"
    DELETED = "DELETED"


class EventType(enum.StrEnum):
    VIEW = "VIEW"
    CLICK = "CLICK"
    CART = "CART"
    PURCHASE = "PURCHASE"
    RATING = "RATING"
    SEARCH = "SEARCH"
    DISMISS = "DISMISS"


class EvidenceKind(enum.StrEnum):
    MATCHED_CATEGORY = "MATCHED_CATEGORY"
    SIMILAR_TO_RECENT = "SIMILAR_TO_RECENT"
    QUERY_CONSTRAINT = "QUERY_CONSTRAINT"
    POPULAR = "POPULAR"
    CO_VISITED = "CO_VISITED"
    OTHER = "OTHER"
    STATED_PREFERENCE = "STATED_PREFERENCE"


class ExplanationSource(enum.StrEnum):
    TEMPLATE = "TEMPLATE"
    LLM = "LLM"
    NONE = "NONE"


class Route(enum.StrEnum):
    CF = "CF"
    CONTENT = "CONTENT"
    HYBRID = "HYBRID"
    POPULARITY = "POPULARITY"


class WarmthBucket(enum.StrEnum):
    COLD = "COLD"
    WARMING = "WARMING"
    WARM = "WARM"


class LlmUseCase(enum.StrEnum):
    ENRICH = "ENRICH"
    INTENT = "INTENT"
    RERANK = "RERANK"
    EXPLAIN = "EXPLAIN"
    JUDGE = "JUDGE"
    DIALOGUE = "DIALOGUE"


class SignalKind(enum.StrEnum):
    CATEGORY = "CATEGORY"
    NOT_CATEGORY = "NOT_CATEGORY"
    ERA = "ERA"
    MOOD = "MOOD"
    CONSTRAINT = "CONSTRAINT"
    NEGATIVE = "NEGATIVE"
    LIKED_ITEM = "LIKED_ITEM"
    DISLIKED_ITEM = "DISLIKED_ITEM"
    OTHER = "OTHER"


class DialogueAction(enum.StrEnum):
    QUESTION = "QUESTION"
    RECOMMEND = "RECOMMEND"


class ResponseStatus(enum.StrEnum):
    """What kind of answer a :class:`RecResponse` is (``OK`` for every older response)."""

    OK = "OK"
    EXPIRED = "EXPIRED"


class ValidationResult(enum.StrEnum):
    VALID = "VALID"
    INVALID = "INVALID"
    NOT_RUN = "NOT_RUN"


class CatalogChange(Record):
    """An upstream catalog item was created, changed or deleted."""

    avro_name: ClassVar[str] = "streamrec.CatalogChange"

    change_id: NonEmpty = Field(default_factory=new_id)
    item_id: NonEmpty
    version: int = Field(ge=0)
    op: ChangeOp = ChangeOp.UPSERT
    title: str = Field(default="", max_length=2_000)
    categories: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    description: str = Field(default="", max_length=20_000)
    attributes: dict[str, str] = Field(default_factory=dict)
    available: bool = True
    occurred_at: AwareDatetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _upsert_has_text(self) -> Self:
        if self.op is ChangeOp.UPSERT and not (self.title.strip() or self.description.strip()):
            raise ValueError("an UPSERT needs a title or a description to embed")
        return self


class ItemEnriched(Record):
    """An item version is stored in pgvector (or deleted there), with its provenance."""

    avro_name: ClassVar[str] = "streamrec.ItemEnriched"

    item_id: NonEmpty
    version: int = Field(ge=0)
    change_id: NonEmpty
    deleted: bool = False
    content_hash: str
    enrichment_status: EnrichmentStatus = EnrichmentStatus.LLM_OFF
    embedding_model: str = ""
    embedding_dim: int = 0
    prompt_version: str | None = None
    llm_model: str | None = None
    tags: list[str] = Field(default_factory=list)
    enriched_at: AwareDatetime = Field(default_factory=utcnow)


_ITEM_EVENTS = frozenset(
    {
        EventType.VIEW,
        EventType.CLICK,
        EventType.CART,
        EventType.PURCHASE,
        EventType.RATING,
        EventType.DISMISS,
    }
)


class UserEvent(Record):
    """A user interacted with an item, or searched."""

    avro_name: ClassVar[str] = "streamrec.UserEvent"

    event_id: NonEmpty = Field(default_factory=new_id)
    user_id: NonEmpty
    event_type: EventType
    item_id: NonEmpty | None = None
    rating: float | None = Field(default=None, ge=0.0, le=10.0)
    query: str | None = Field(default=None, max_length=2_000)
    session_id: str | None = None
    rec_request_id: str | None = None
    occurred_at: AwareDatetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.event_type in _ITEM_EVENTS and self.item_id is None:
            raise ValueError(f"a {self.event_type} event needs an item_id")
        if self.event_type is EventType.RATING and self.rating is None:
            raise ValueError("a RATING event needs a rating")
        if self.event_type is EventType.SEARCH and not (self.query and self.query.strip()):
            raise ValueError("a SEARCH event needs a non-empty query")
        return self


class ConversationTurn(Record):
    """Where a request sits in a conversation: which one, which turn, what the user said."""

    avro_name: ClassVar[str] = "streamrec.ConversationTurn"

    conversation_id: Annotated[str, Field(min_length=1, max_length=128)]
    turn: int = Field(ge=1, le=1000)
    text: str = Field(default="", max_length=2_000)
    show_now: bool = False


class RecRequest(Record):
    """Recommend up to ``k`` items to a user, optionally for a natural-language query."""

    avro_name: ClassVar[str] = "streamrec.RecRequest"

    request_id: NonEmpty = Field(default_factory=new_id)
    user_id: NonEmpty
    k: int = Field(default=10, ge=1, le=100)
    query: str | None = Field(default=None, max_length=2_000)
    exclude_item_ids: list[str] = Field(default_factory=list, max_length=10_000)
    context: dict[str, str] = Field(default_factory=dict)
    deadline_ms: int = Field(default=1000, ge=1, le=600_000)
    requested_at: AwareDatetime = Field(default_factory=utcnow)
    fill_with_soft_matches: bool = True
    conversation: ConversationTurn | None = None


class Evidence(Record):
    """One fact that justifies an item."""

    avro_name: ClassVar[str] = "streamrec.Evidence"

    kind: EvidenceKind = EvidenceKind.OTHER
    value: str
    ref_item_id: str | None = None
    turn: int | None = Field(default=None, ge=1)


class RecommendedItem(Record):
    """One ranked item of a response."""

    avro_name: ClassVar[str] = "streamrec.RecommendedItem"

    item_id: NonEmpty
    rank: int = Field(ge=1)
    score: float
    source: str
    explanation: str = ""
    explanation_source: ExplanationSource = ExplanationSource.TEMPLATE
    evidence: list[Evidence] = Field(default_factory=list)
    ranker_rank: int | None = Field(default=None, ge=1)


class PreferenceSignal(Record):
    """One preference stated in a conversation, with the turn that stated it."""

    avro_name: ClassVar[str] = "streamrec.PreferenceSignal"

    kind: SignalKind = SignalKind.OTHER
    value: str
    turn: int = Field(ge=1)
    ref_item_id: str | None = None


class DialogueReply(Record):
    """The dialogue part of a response: a clarifying question, or recommendations."""

    avro_name: ClassVar[str] = "streamrec.DialogueReply"

    conversation_id: NonEmpty
    turn: int = Field(ge=1)
    action: DialogueAction
    question: str | None = None
    attribute: str | None = None
    options: list[str] = Field(default_factory=list)
    candidates: int = Field(default=0, ge=0)
    signals: list[PreferenceSignal] = Field(default_factory=list)
    reason: str = ""
    parser: str = "rules"


class RecResponse(Record):
    """The answer to a request: ranked items, route, warmth, propensity and versions."""

    avro_name: ClassVar[str] = "streamrec.RecResponse"

    request_id: NonEmpty
    user_id: NonEmpty
    items: list[RecommendedItem]
    route: Route
    warmth_bucket: WarmthBucket
    propensity: float = Field(ge=0.0, le=1.0)
    llm_used: bool
    llm_fallback_reason: str | None = None
    policy: str = "production"
    model_version: str | None = None
    prompt_version: str | None = None
    llm_model: str | None = None
    embedding_model: str | None = None
    latency_ms: float = Field(ge=0.0)
    produced_at: AwareDatetime = Field(default_factory=utcnow)
    policy_version: str | None = None
    has_query: bool = False
    has_history: bool = False
    rerank_available: bool = False
    rerank: bool = False
    content_weight: float | None = None
    popularity_weight: float | None = None
    explored: bool = False
    eligible_count: int | None = Field(default=None, ge=0)
    short_reason: str | None = None
    conversation: DialogueReply | None = None
    status: ResponseStatus = ResponseStatus.OK

    @property
    def expired(self) -> bool:
        """The request's deadline had passed before serving began: nothing was computed,
        nothing is to be shown (``items`` is empty; route, warmth and the decision fields
        are placeholders). Not an impression."""
        return self.status is ResponseStatus.EXPIRED


class LlmInvolvement(Record):
    """One use of an LLM, or one decision not to use it."""

    avro_name: ClassVar[str] = "streamrec.LlmInvolvement"

    record_id: NonEmpty = Field(default_factory=new_id)
    request_id: NonEmpty
    user_id: str | None = None
    item_id: str | None = None
    use_case: LlmUseCase
    called: bool
    used: bool
    decision: str
    prompt_version: str | None = None
    model: str | None = None
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0.0)
    cost_usd: float = Field(default=0.0, ge=0.0)
    cache_hit: bool = False
    attempts: int = Field(default=0, ge=0)
    validation: ValidationResult = ValidationResult.NOT_RUN
    validation_errors: list[str] = Field(default_factory=list)
    hallucinated_ids: list[str] = Field(default_factory=list)
    injection_flagged: bool = False
    fallback: bool = False
    fallback_reason: str | None = None
    route: str | None = None
    propensity: float | None = None
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    prompt: str | None = None
    injection_reasons: list[str] = Field(default_factory=list)
    max_displacement: int | None = Field(default=None, ge=0)
    moved_max: int = Field(default=0, ge=0)
    clamped_items: int = Field(default=0, ge=0)
    policy_version: str | None = None
    action: str | None = None


class FeedbackExample(Record):
    """A shown item joined with the user's later outcome on it."""

    avro_name: ClassVar[str] = "streamrec.FeedbackExample"

    example_id: NonEmpty
    request_id: NonEmpty
    user_id: NonEmpty
    item_id: NonEmpty
    rank: int = Field(ge=1)
    route: str
    warmth_bucket: str
    llm_used: bool
    prompt_version: str | None = None
    llm_model: str | None = None
    model_version: str | None = None
    propensity: float = Field(ge=0.0, le=1.0)
    clicked: bool = False
    carted: bool = False
    purchased: bool = False
    dismissed: bool = False
    rating: float | None = None
    attributed_by: str = "none"
    impression_at: AwareDatetime
    outcome_at: AwareDatetime | None = None
    serve_latency_ms: float = 0.0
    policy_version: str | None = None
    has_query: bool = False
    has_history: bool = False
    rerank_available: bool = False
    rerank: bool = False
    content_weight: float | None = None
    popularity_weight: float | None = None
    explored: bool = False
