"""What a conversation knows: preference signals, each with the turn that stated it.

A conversation's state is a *fold* of its stored turns in turn order (never a counter
kept beside them), so a redelivered turn — stored once, keyed by its number — can
change nothing, and a restart rebuilds exactly the same state from Postgres.
Later turns win over earlier ones where preferences exclude each other: a newer era or
constraint replaces an older one, a category later excluded is no longer wanted (and
the other way round).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from recsys.dialogue.attributes import attribute_of_key
from recsys.items.model import ItemFilters, category_key
from recsys.records import DialogueAction, PreferenceSignal, SignalKind
from recsys.serving.intent import Intent

__all__ = ["DialogueState", "Reading", "Signal", "StoredTurn"]


class Signal(BaseModel):
    """One stated preference.

    Attributes:
        kind: what kind of preference.
        value: as shown to the user ("Comedy", "1990s", "language: French").
        turn: the turn that stated it.
        key: the item attribute it is about (``mood``, ``language``, ``runtime``…).
        match: the stored attribute value an item must carry (equality constraints).
        low / high: the range of an ERA (years) or of a numeric constraint (minutes).
        item_id: the catalog item a LIKED_ITEM / DISLIKED_ITEM resolved to.
        hard: the catalog can filter on it (else it only steers retrieval and ranking).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: SignalKind
    value: str = Field(min_length=1, max_length=200)
    turn: int = Field(ge=1)
    key: str = ""
    match: str | None = None
    low: int | None = None
    high: int | None = None
    item_id: str | None = None
    hard: bool = False

    def wire(self) -> PreferenceSignal:
        """The signal as it travels on ``rec.responses``."""
        return PreferenceSignal(
            kind=self.kind, value=self.value, turn=self.turn, ref_item_id=self.item_id
        )

    def identity(self) -> tuple[Any, ...]:
        """What makes two signals the same preference (the turn aside)."""
        return (self.kind, self.key, (self.match or self.value).casefold(), self.item_id)


class Reading(BaseModel):
    """What one turn says, before it is attributed to a turn (parsers produce this)."""

    model_config = ConfigDict(extra="forbid")

    signals: list[Signal] = Field(default_factory=list)
    #: attributes the user settled without a preference ("any era is fine")
    settled: list[str] = Field(default_factory=list)
    show_now: bool = False


class StoredTurn(BaseModel):
    """One answered turn, as stored (text already redacted and screened)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    turn: int = Field(ge=1)
    request_id: str
    text: str = ""
    signals: list[Signal] = Field(default_factory=list)
    settled: list[str] = Field(default_factory=list)
    show_now: bool = False
    action: DialogueAction
    asked: str | None = None
    flagged: bool = False
    parser: str = "rules"


def _exclusive(signal: Signal) -> tuple[Any, ...] | None:
    """Signals that replace earlier ones of the same slot (None: they accumulate)."""
    if signal.kind is SignalKind.ERA:
        return ("era",)
    if signal.kind in (SignalKind.CONSTRAINT, SignalKind.MOOD):
        return (signal.kind, signal.key)
    return None


class DialogueState:
    """A conversation folded from its turns (oldest first)."""

    def __init__(self, user_id: str, conversation_id: str, turns: Sequence[StoredTurn]) -> None:
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.turns = sorted(turns, key=lambda t: t.turn)

    def with_turn(self, turn: StoredTurn) -> DialogueState:
        """The state after ``turn`` (a new object; this one is unchanged)."""
        kept = [t for t in self.turns if t.turn != turn.turn]
        return DialogueState(self.user_id, self.conversation_id, [*kept, turn])

    def before(self, turn: int) -> DialogueState:
        """The state as it was when ``turn`` arrived (its earlier turns only)."""
        return DialogueState(
            self.user_id, self.conversation_id, [t for t in self.turns if t.turn < turn]
        )

    def stored(self, turn: int) -> StoredTurn | None:
        """The stored turn with this number, if any."""
        return next((t for t in self.turns if t.turn == turn), None)

    @property
    def signals(self) -> list[Signal]:
        """The preferences in force, oldest first (later turns win where they conflict)."""
        out: list[Signal] = []
        for turn in self.turns:
            for signal in turn.signals:
                slot = _exclusive(signal)
                if slot is not None:
                    out = [s for s in out if _exclusive(s) != slot]
                if signal.kind is SignalKind.CATEGORY:
                    out = [s for s in out if not _same_category(s, signal, SignalKind.NOT_CATEGORY)]
                if signal.kind is SignalKind.NOT_CATEGORY:
                    out = [s for s in out if not _same_category(s, signal, SignalKind.CATEGORY)]
                if all(s.identity() != signal.identity() for s in out):
                    out.append(signal)
        return out

    @property
    def asked(self) -> list[str]:
        """Attributes asked about so far, in order (a question is never repeated)."""
        return [t.asked for t in self.turns if t.asked is not None]

    @property
    def questions(self) -> int:
        """How many clarifying questions the conversation has had."""
        return sum(1 for t in self.turns if t.action is DialogueAction.QUESTION)

    @property
    def pending(self) -> str | None:
        """The attribute the last reply asked about, if the last reply was a question."""
        if not self.turns or self.turns[-1].action is not DialogueAction.QUESTION:
            return None
        return self.turns[-1].asked

    @property
    def settled(self) -> set[str]:
        """Attributes the user has answered, with a preference or with "any"."""
        out = {a for t in self.turns for a in t.settled}
        out |= {_attribute_of(s) for s in self.signals}
        return out

    @property
    def show_now(self) -> bool:
        """The user took the way out in the latest turn."""
        return bool(self.turns) and self.turns[-1].show_now

    @property
    def flagged(self) -> bool:
        """Any turn had instruction-like text removed."""
        return any(t.flagged for t in self.turns)

    def summary(self) -> str | None:
        """The conversation as one retrieval query: every turn's (screened) text."""
        parts = [t.text.strip().rstrip(".") for t in self.turns if t.text.strip()]
        for s in self.signals:
            if s.kind is SignalKind.MOOD and s.value.casefold() not in " ".join(parts).casefold():
                parts.append(s.value)
        return ". ".join(parts) or None

    def intent(self) -> Intent:
        """The conversation's hard preferences as an :class:`Intent` (no catalog check)."""
        wanted = [s.value for s in self.signals if s.kind is SignalKind.CATEGORY]
        unwanted = [s.value for s in self.signals if s.kind is SignalKind.NOT_CATEGORY]
        era = next((s for s in self.signals if s.kind is SignalKind.ERA), None)
        soft = [s.value for s in self.signals if s.kind in (SignalKind.MOOD, SignalKind.LIKED_ITEM)]
        negatives = [s.value for s in self.signals if s.kind is SignalKind.NEGATIVE]
        return Intent(
            category=wanted[0] if wanted else None,
            categories_any=wanted[:20],
            categories_none=unwanted[:20],
            year_min=era.low if era else None,
            year_max=era.high if era else None,
            soft_preferences=[p[:100] for p in soft[:10]],
            negatives=[p[:100] for p in negatives[:10]],
            confidence=0.9 if self.signals else 0.2,
        )

    def filters(self) -> ItemFilters | None:
        """What the catalog must satisfy: categories, era, hard constraints."""
        intent = self.intent()
        attributes: dict[str, str] = {}
        ranges: dict[str, tuple[float | None, float | None]] = {}
        if intent.year_min is not None or intent.year_max is not None:
            ranges["year"] = (
                float(intent.year_min) if intent.year_min is not None else None,
                float(intent.year_max) if intent.year_max is not None else None,
            )
        for s in self.signals:
            if not s.hard or s.kind not in (SignalKind.CONSTRAINT, SignalKind.MOOD):
                continue
            if s.match is not None:
                attributes[s.key] = s.match
            elif s.low is not None or s.high is not None:
                ranges[s.key] = (
                    float(s.low) if s.low is not None else None,
                    float(s.high) if s.high is not None else None,
                )
        if not (intent.categories_any or intent.categories_none or attributes or ranges):
            return None
        return ItemFilters(
            categories_any=list(intent.categories_any),
            categories_none=list(intent.categories_none),
            attributes=attributes,
            ranges=ranges,
        )

    def named_items(self) -> list[str]:
        """Items the user named (liked or disliked): never recommended back."""
        return [
            s.item_id
            for s in self.signals
            if s.item_id is not None and s.kind in (SignalKind.LIKED_ITEM, SignalKind.DISLIKED_ITEM)
        ]


def _same_category(a: Signal, b: Signal, kind: SignalKind) -> bool:
    return a.kind is kind and category_key(a.value) == category_key(b.value)


def _attribute_of(signal: Signal) -> str:
    """The question attribute a signal answers."""
    if signal.kind in (SignalKind.CATEGORY, SignalKind.NOT_CATEGORY):
        return "genre"
    if signal.kind is SignalKind.ERA:
        return "era"
    if signal.kind is SignalKind.MOOD:
        return "mood"
    if signal.kind is SignalKind.CONSTRAINT:
        return attribute_of_key(signal.key)
    return signal.kind.value.lower()
