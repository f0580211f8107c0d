"""Reading a completion: every way an answer can be unusable has its own reason."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from recsys.llm.answer import read_answer


class Said(BaseModel):
    model_config = ConfigDict(extra="forbid")
    said: str


def completion(content: str | None, finish: str = "stop", refusal: str | None = None) -> Any:
    message = SimpleNamespace(content=content, refusal=refusal)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)])


@pytest.mark.parametrize(
    ("response", "reason", "detail"),
    [
        (SimpleNamespace(choices=[]), "empty_response", "no choices"),
        (completion(""), "empty_response", "no content"),
        (completion(None, refusal="I can't help with that"), "refused", "can't help"),
        (completion('{"said": "hel', finish="length"), "truncated", "token limit"),
        (completion("hello"), "invalid_json", "not JSON"),
        (completion('["said"]'), "invalid_json", "got list"),
        (completion('{"said": 1}'), "schema_violation", "said: Input should be a valid string"),
        (completion('{"said": "x", "more": 1}'), "schema_violation", "more: Extra inputs"),
    ],
)
def test_unusable_answers(response: Any, reason: str, detail: str) -> None:
    answer = read_answer(response, Said)
    assert answer.value is None and answer.reason == reason and detail in answer.detail


def test_a_good_answer_with_and_without_a_model() -> None:
    assert read_answer(completion('{"said": "hi"}'), Said).value == Said(said="hi")
    assert read_answer(completion('{"said": 1}'), None).value == {"said": 1}
