"""Grammar-constrained decoding: ``response_format`` → a token mask at every step.

Built on ``llguidance`` (chosen by measurement, see docs/local-llm.md): it compiles a
JSON schema into a grammar in milliseconds and computes each step's allowed-token
bitmask in Rust. It enforces the subset our prompts use — ``enum`` (strings, integers,
``null``), type unions with ``null``, arrays with ``minItems``/``maxItems``, strings
with ``maxLength``, integer ``minimum``/``maximum``, ``required`` and
``additionalProperties: false`` — during decoding, so a constrained answer is valid
JSON of the schema unless it is cut off by ``max_tokens`` (``finish_reason`` then
says ``length``). JSON is generated compact (no free whitespace), which also saves
tokens.

* ``{"type": "json_schema", "json_schema": {"schema": …}}`` — that schema;
* ``{"type": "json_object"}`` — any JSON object;
* ``{"type": "text"}`` or none — unconstrained.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from stack.local_llm.exceptions import InvalidRequest

__all__ = ["Constraint", "GrammarCompiler", "strict_json"]


def strict_json(text: str) -> str:
    """``text`` spelled as strict JSON: raw control characters inside strings escaped.

    llguidance's JSON string lexeme admits raw control characters (U+0000 to U+001F), which
    RFC 8259 requires escaped: a control character the model wrote in a summary made a strict
    parser refuse 2 of 203 enrichment answers. The value is unchanged, only its spelling;
    text that is strict already (or not JSON at all, e.g. cut off by ``max_tokens``) is
    returned as it is.
    """
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Constraint:
    """One request's grammar state: masks logits, follows the chosen tokens."""

    def __init__(self, matcher: Any, n_vocab: int) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._words = (n_vocab + 31) // 32
        self._bits = torch.zeros(self._words, dtype=torch.int32)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with every token the grammar forbids set to ``-inf``."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.data_ptr(), self._words * 4)
        packed = self._bits.numpy().view(np.uint8)
        allowed = np.unpackbits(packed, bitorder="little")[: logits.shape[-1]].astype(bool)
        if allowed.shape[0] < logits.shape[-1]:  # the model's head is wider than the vocab
            allowed = np.pad(allowed, (0, logits.shape[-1] - allowed.shape[0]))
        return logits.masked_fill(torch.from_numpy(~allowed), float("-inf"))

    def consume(self, token: int) -> None:
        """Advance past ``token`` (one the mask allowed)."""
        self._matcher.consume_token(token)

    def forced(self) -> list[int]:
        """The tokens the grammar allows as the only continuation from here."""
        return list(self._matcher.compute_ff_tokens())

    def consume_many(self, tokens: list[int]) -> None:
        """Advance past ``tokens`` (from :meth:`forced`)."""
        self._matcher.consume_tokens(tokens)

    @property
    def finished(self) -> bool:
        """True when the grammar allows nothing more (the JSON value is complete)."""
        return bool(self._matcher.is_stopped())

    @property
    def error(self) -> str | None:
        """The matcher's error, if it entered its error state."""
        return str(self._matcher.get_error()) if self._matcher.is_error() else None


class GrammarCompiler:
    """Turns ``response_format`` objects into :class:`Constraint` objects for one tokenizer."""

    def __init__(self, hf_tokenizer: Any, n_vocab: int, eos_token_ids: list[int]) -> None:
        import llguidance
        import llguidance.hf

        self._ll = llguidance
        self.n_vocab = n_vocab
        self._tokenizer = llguidance.hf.from_tokenizer(
            hf_tokenizer, n_vocab=n_vocab, eos_token=eos_token_ids
        )
        self._grammars: dict[str, str] = {}

    def _grammar(self, schema: Mapping[str, Any]) -> str:
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = self._ll.LLMatcher.grammar_from_json_schema(
                    dict(schema), defaults={"whitespace_flexible": False}
                )
            except ValueError as exc:
                raise InvalidRequest(
                    f"invalid JSON schema: {exc}", param="response_format.json_schema.schema"
                ) from exc
            is_error, messages = self._ll.LLMatcher.validate_grammar_with_warnings(
                grammar, self._tokenizer
            )
            if is_error:
                raise InvalidRequest(
                    f"unsupported JSON schema: {'; '.join(messages)[:500]}",
                    param="response_format.json_schema.schema",
                )
            if len(self._grammars) >= 512:
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def compile(self, response_format: Mapping[str, Any] | None) -> Constraint | None:
        """The constraint for a request's ``response_format`` (None: unconstrained).

        Raises:
            InvalidRequest: an unknown type, a missing or unsupported schema.
        """
        if response_format is None:
            return None
        kind = response_format.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            schema: Mapping[str, Any] = {"type": "object"}
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            inner = spec.get("schema") if isinstance(spec, Mapping) else None
            if not isinstance(inner, Mapping):
                raise InvalidRequest(
                    "response_format json_schema needs a json_schema.schema object",
                    param="response_format.json_schema",
                )
            schema = inner
        else:
            raise InvalidRequest(
                f"response_format type {kind!r} is not one of text, json_object, json_schema",
                param="response_format.type",
            )
        matcher = self._ll.LLMatcher(self._tokenizer, self._grammar(schema))
        if matcher.is_error():
            raise InvalidRequest(
                f"unsupported JSON schema: {matcher.get_error()}",
                param="response_format.json_schema.schema",
            )
        return Constraint(matcher, self.n_vocab)
