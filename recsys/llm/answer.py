"""Reading a chat completion into a validated value, or the exact reason it is unusable.

Pure (no I/O), so the rules are the same for every use case and testable alone: no
choice or no content is ``empty_response``; a refusal is ``refused``; an answer cut at
the token limit is ``truncated``; text that is not a JSON object is ``invalid_json``; a
JSON object the pydantic model rejects (extra fields, wrong types, validators such as
the taxonomy check) is ``schema_violation`` with one line per error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from recsys.llm.result import EMPTY, INVALID_JSON, REFUSED, SCHEMA_VIOLATION, TRUNCATED

__all__ = ["Answer", "read_answer", "short"]


@dataclass(frozen=True)
class Answer:
    """The usable value of a completion, or why there is none."""

    value: Any = None
    content: str | None = None
    reason: str | None = None
    detail: str = ""
    errors: tuple[str, ...] = ()


def short(text: str, limit: int = 500) -> str:
    """Whitespace collapsed, cut to ``limit`` characters (for logs and records)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(error: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ())) or "answer"
    return short(f"{loc}: {error.get('msg', 'invalid')}", 300)


def read_answer(
    response: Any, model: type[BaseModel] | None, context: Mapping[str, Any] | None = None
) -> Answer:
    """The first choice of ``response`` parsed as JSON and validated into ``model``."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return Answer(reason=EMPTY, detail="the response has no choices")
    choice = choices[0]
    message = choice.message
    content = message.content
    if getattr(message, "refusal", None):
        return Answer(content=content, reason=REFUSED, detail=short(str(message.refusal)))
    if not content:
        return Answer(content=content, reason=EMPTY, detail="the answer has no content")
    if choice.finish_reason == "length":
        return Answer(
            content=content, reason=TRUNCATED, detail="the answer was cut off at the token limit"
        )
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        return Answer(content=content, reason=INVALID_JSON, detail=f"not JSON: {exc}")
    if not isinstance(data, dict):
        return Answer(
            content=content,
            reason=INVALID_JSON,
            detail=f"expected a JSON object, got {type(data).__name__}",
        )
    if model is None:
        return Answer(value=data, content=content)
    try:
        return Answer(
            value=model.model_validate(data, context=dict(context or {})), content=content
        )
    except ValidationError as exc:
        errors = tuple(_error_text(e) for e in exc.errors())
        return Answer(
            content=content,
            reason=SCHEMA_VIOLATION,
            detail=short("; ".join(errors)),
            errors=errors,
        )
