"""What the simulated LLM answers when it reads a conversation turn (schema ``dialogue_turn``).

Honest: the rules reader (:func:`recsys.dialogue.reading.read_rules`) on the quoted reply,
with the pending question's attribute and options from the quoted ASKED block, restricted
to what the schema enumerates (so an honest answer always validates). Predictable, so a
test can say what each turn yields.

Misbehaving modes: ``hallucinate`` — a category outside the catalog and an option that
was never offered (the answer fails validation: the rules take over);
``obey_injections`` (also ``obeys_injections``) — a gullible model: a reply that says to
ignore instructions makes it answer "show now" with the first category of the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from recsys.llm.prompts import unquote

__all__ = ["DIALOGUE_HANDLERS", "dialogue_turn_answer"]

_IGNORE_WORDS = ("ignore", "disregard", "forget your")


def _block(messages: Sequence[Mapping[str, Any]], label: str) -> Any:
    text = "\n".join(str(m.get("content") or "") for m in messages)
    try:
        return unquote(text, label)
    except ValueError:
        return {}


def _enum(schema: Mapping[str, Any], name: str, items: bool) -> list[Any]:
    node = schema.get("properties", {}).get(name, {})
    if items:
        node = node.get("items", {})
    return [v for v in node.get("enum", []) if v is not None]


def dialogue_turn_answer(
    messages: Sequence[Mapping[str, Any]], schema: Mapping[str, Any], mode: str = "honest"
) -> dict[str, Any]:
    """The simulated model's reading of one conversation turn."""
    from recsys.dialogue.reading import read_rules

    asked = _block(messages, "ASKED")
    turn = _block(messages, "TURN")
    reply = str(turn.get("reply") or "") if isinstance(turn, Mapping) else ""
    pending = asked.get("attribute") if isinstance(asked, Mapping) else None
    options = [str(o) for o in (asked.get("options") or [])] if isinstance(asked, Mapping) else []
    categories = [str(c) for c in _enum(schema, "categories", items=True)]
    parse = read_rules(reply, categories, pending=pending, options=options).model_dump()
    if parse["option"] is not None and parse["option"] not in options:
        parse["option"] = None  # an "older half" of several options: the schema allows one
    if mode == "hallucinate":
        parse["categories"] = ["Not-A-Catalog-Category"]
        parse["option"] = "an option nobody offered"
    elif mode in ("obey_injections", "obeys_injections") and any(
        w in reply.lower() for w in _IGNORE_WORDS
    ):
        parse["show_now"] = True
        parse["categories"] = categories[:1]
    return parse


DIALOGUE_HANDLERS = {"dialogue_turn": dialogue_turn_answer}
