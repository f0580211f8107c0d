"""A scripted stand-in for our own LlmClient port (unit tests only; integration tests use
the real client against the real simulated HTTP server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from recsys.llm.result import SCHEMA_VIOLATION, LlmResult


@dataclass
class Call:
    messages: list[dict[str, str]]
    schema_name: str
    schema: Mapping[str, Any]
    deadline: float | None

    def prompt(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


@dataclass
class FakeClient:
    """Answers each call with ``answer(call)``: a dict (validated like the real client)
    or an :class:`LlmResult` (returned as is, e.g. a transport failure)."""

    answer: Callable[[Call], Any]
    model: str = "fake-simulated-model"
    calls: list[Call] = field(default_factory=list)

    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema_name: str,
        schema: Mapping[str, Any],
        model: type[BaseModel] | None = None,
        context: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LlmResult[Any]:
        call = Call([dict(m) for m in messages], schema_name, schema, deadline)
        self.calls.append(call)
        out = self.answer(call)
        if isinstance(out, LlmResult):
            return out
        common: dict[str, Any] = {
            "model": self.model,
            "tokens_in": 100,
            "tokens_out": 10,
            "latency_ms": 5.0,
            "attempts": 1,
            "cost_usd": 0.001,
            "content": json.dumps(out),
        }
        if model is None:
            return LlmResult(ok=True, value=out, **common)
        try:
            value = model.model_validate(out, context=dict(context or {}))
        except ValidationError as exc:
            errors = tuple(str(e["msg"]) for e in exc.errors())
            return LlmResult(
                ok=False, value=None, reason=SCHEMA_VIOLATION, validation_errors=errors, **common
            )
        return LlmResult(ok=True, value=value, **common)


def failure(reason: str, attempts: int = 1) -> LlmResult[Any]:
    """What the real client returns when the endpoint fails."""
    return LlmResult(
        ok=False, value=None, model="fake-simulated-model", reason=reason, attempts=attempts
    )
