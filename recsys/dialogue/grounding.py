"""Grounded justifications: the stated preferences an item satisfies, as evidence.

Only signals the conversation holds are ever cited, each with the turn that stated it,
and only when the item's own data shows it satisfies them: its categories for a wanted
genre, its ``year`` for an era, its mood labels for a mood, its attributes for a
language or length, a shared category with a title the user said they liked. What
cannot be checked on the item (a negative phrase, a mood the catalog does not record)
is never cited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from recsys.dialogue.attributes import labels, language_label
from recsys.dialogue.signals import Signal
from recsys.items.model import ItemRecord, category_key
from recsys.records import Evidence, EvidenceKind, SignalKind

__all__ = ["stated_evidence", "stated_for"]


def _number(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None else None
    except ValueError:
        return None


def _within(value: int | None, low: int | None, high: int | None) -> bool:
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def _fact(signal: Signal, item: ItemRecord, liked: Mapping[str, ItemRecord]) -> str | None:
    """What ``item`` shows of ``signal`` (None: it does not satisfy it, or cannot show it)."""
    keys = {category_key(c): c for c in item.categories}
    if signal.kind is SignalKind.CATEGORY:
        return keys.get(category_key(signal.value))
    if signal.kind is SignalKind.NOT_CATEGORY:
        return None if category_key(signal.value) in keys else f"no {signal.value}"
    if signal.kind is SignalKind.ERA:
        year = _number(item.attributes.get("year"))
        return f"{signal.value} ({year})" if _within(year, signal.low, signal.high) else None
    if signal.kind is SignalKind.MOOD:
        return signal.value if signal.value in labels("mood", item) else None
    if signal.kind is SignalKind.CONSTRAINT:
        stored = item.attributes.get(signal.key)
        if signal.match is not None:
            if stored is None or stored.strip().lower() != signal.match.strip().lower():
                return None
            return f"in {language_label(stored)}" if signal.key == "language" else signal.value
        return signal.value if _within(_number(stored), signal.low, signal.high) else None
    if signal.kind is SignalKind.LIKED_ITEM and signal.item_id is not None:
        other = liked.get(signal.item_id)
        if other is None or other.item_id == item.item_id:
            return None
        shared = {category_key(c) for c in other.categories} & set(keys)
        return f"like {other.title or signal.value}" if shared else None
    return None


def stated_evidence(
    item: ItemRecord | None,
    signals: Sequence[Signal],
    liked: Mapping[str, ItemRecord] | None = None,
) -> list[Evidence]:
    """One STATED_PREFERENCE fact per signal ``item`` satisfies, in the order stated."""
    if item is None:
        return []
    out: list[Evidence] = []
    for signal in signals:
        fact = _fact(signal, item, liked or {})
        if fact is not None:
            out.append(
                Evidence(
                    kind=EvidenceKind.STATED_PREFERENCE,
                    value=fact,
                    ref_item_id=signal.item_id,
                    turn=signal.turn,
                )
            )
    return out


def stated_for(
    signals: Sequence[Signal], liked: Mapping[str, ItemRecord] | None = None
) -> Callable[[ItemRecord | None], list[Evidence]]:
    """The evidence function the recommender's explanations call per item."""
    frozen = list(signals)
    return lambda item: stated_evidence(item, frozen, liked)
