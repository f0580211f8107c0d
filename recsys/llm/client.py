"""The OpenAI-compatible LLM client every capability uses (enrich, intent, rerank, explain, judge).

One call = prompt messages + a JSON schema (sent as ``response_format`` json_schema)
+ optionally a pydantic model the answer must validate into. The client owns what
every use case needs and none should re-implement:

* the ``openai`` SDK (``AsyncOpenAI``, imported lazily) against any compatible endpoint;
* temperature capped at 0.3; a per-attempt timeout; an explicit ``deadline`` so a
  caller can bound the whole call (retries included) by a request's deadline;
* retries with exponential backoff and jitter on 429, 5xx, timeouts and connection
  errors — never on a well-formed but invalid answer (the caller decides whether to
  ask again, and logs each call);
* a bound on concurrent HTTP calls per client;
* accounting: tokens from ``usage``, latency, attempts, cost from the configured prices.

A call never raises for an LLM problem: it returns an :class:`LlmResult` whose
``reason`` says exactly why it failed (the constants of :mod:`recsys.llm.result`, or
``http_<status>``), so callers can fall back and log without try/except around every call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar, overload

from pydantic import BaseModel

from recsys.exceptions import ConfigurationError
from recsys.llm.answer import read_answer, short
from recsys.llm.result import (
    CONNECTION,
    DEADLINE,
    EMPTY,
    INVALID_JSON,
    REFUSED,
    SCHEMA_VIOLATION,
    TIMEOUT,
    TRUNCATED,
    LlmResult,
    LlmStats,
    is_retryable,
    is_transport_failure,
)

__all__ = [
    "CONNECTION",
    "DEADLINE",
    "EMPTY",
    "INVALID_JSON",
    "MAX_TEMPERATURE",
    "REFUSED",
    "SCHEMA_VIOLATION",
    "TIMEOUT",
    "TRUNCATED",
    "LlmClient",
    "LlmResult",
    "LlmSettings",
    "LlmStats",
    "is_retryable",
    "is_transport_failure",
    "response_format",
]

log = logging.getLogger(__name__)

#: The temperature ceiling of every structured call (constrained, repeatable output).
MAX_TEMPERATURE = 0.3
#: At most this many characters of a prompt go to ``rec.llm-log``.
PROMPT_LOG_CHARS = 20_000


class LlmSettings(Protocol):
    """The settings fields the client reads (``streams.settings.Settings`` has them)."""

    @property
    def llm_base_url(self) -> str | None: ...
    @property
    def llm_model(self) -> str | None: ...
    @property
    def llm_api_key(self) -> Any: ...
    @property
    def llm_temperature(self) -> float: ...
    @property
    def llm_timeout_s(self) -> float: ...
    @property
    def llm_max_retries(self) -> int: ...
    @property
    def llm_max_concurrency(self) -> int: ...
    @property
    def llm_price_in_per_1k(self) -> float: ...
    @property
    def llm_price_out_per_1k(self) -> float: ...
    @property
    def llm_log_prompts(self) -> bool: ...


M = TypeVar("M", bound=BaseModel)


def response_format(name: str, schema: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """The ``response_format`` of a structured-output call."""
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(schema), "strict": strict},
    }


class _Failure(Exception):
    def __init__(self, reason: str, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s


class LlmClient:
    """Structured JSON calls to one model at one OpenAI-compatible endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        temperature: float = 0.2,
        timeout_s: float = 10.0,
        max_retries: int = 2,
        max_concurrency: int = 4,
        price_in_per_1k: float = 0.0,
        price_out_per_1k: float = 0.0,
        backoff_base_s: float = 0.25,
        backoff_max_s: float = 4.0,
        max_tokens: int | None = 800,
        log_prompts: bool = True,
    ) -> None:
        self.log_prompts = log_prompts
        if not 0.0 <= temperature <= MAX_TEMPERATURE:
            raise ConfigurationError(
                f"LLM temperature must be within 0..{MAX_TEMPERATURE}, got {temperature}"
            )
        if max_concurrency < 1:
            raise ConfigurationError("LLM max_concurrency must be at least 1")
        self.base_url = base_url
        self.model = model
        self._api_key = api_key
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.price_in_per_1k = price_in_per_1k
        self.price_out_per_1k = price_out_per_1k
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_tokens = max_tokens
        self.stats = LlmStats()
        self._sdk: Any = None
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: LlmSettings, **overrides: Any) -> LlmClient:
        """A client for the configured endpoint.

        Raises:
            ConfigurationError: no endpoint or model is configured (the LLM is off).
        """
        if not settings.llm_base_url or not settings.llm_model:
            raise ConfigurationError(
                "no LLM configured: set STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL"
            )
        key = settings.llm_api_key
        params: dict[str, Any] = {
            "base_url": settings.llm_base_url,
            "model": settings.llm_model,
            "api_key": key.get_secret_value() if key is not None else None,
            "temperature": settings.llm_temperature,
            "timeout_s": settings.llm_timeout_s,
            "max_retries": settings.llm_max_retries,
            "max_concurrency": settings.llm_max_concurrency,
            "price_in_per_1k": settings.llm_price_in_per_1k,
            "price_out_per_1k": settings.llm_price_out_per_1k,
            "log_prompts": settings.llm_log_prompts,
        }
        params.update(overrides)
        return cls(**params)

    # ---- plumbing ---------------------------------------------------------------------
    @property
    def sdk(self) -> Any:
        """The ``openai.AsyncOpenAI`` client, created on first use (SDK retries off: ours count)."""
        if self._sdk is None:
            from openai import AsyncOpenAI

            self._sdk = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "not-needed",
                max_retries=0,
                timeout=self.timeout_s,
            )
        return self._sdk

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    async def aclose(self) -> None:
        """Close the HTTP connections (inside the loop that used them)."""
        if self._sdk is not None:
            await self._sdk.close()
            self._sdk = None

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """USD for a call with these token counts at the configured prices."""
        return tokens_in / 1000 * self.price_in_per_1k + tokens_out / 1000 * self.price_out_per_1k

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.backoff_max_s)
        base = min(self.backoff_base_s * 2 ** (attempt - 1), self.backoff_max_s)
        return base * (0.5 + random.random() / 2)

    # ---- the call ---------------------------------------------------------------------
    @overload
    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema_name: str,
        schema: Mapping[str, Any],
        model: type[M],
        context: Mapping[str, Any] | None = ...,
        deadline: float | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
    ) -> LlmResult[M]: ...

    @overload
    async def complete(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema_name: str,
        schema: Mapping[str, Any],
        model: None = ...,
        context: Mapping[str, Any] | None = ...,
        deadline: float | None = ...,
        temperature: float | None = ...,
        max_tokens: int | None = ...,
    ) -> LlmResult[dict[str, Any]]: ...

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
        """Ask for a JSON object matching ``schema``; validate it into ``model``.

        Args:
            messages: chat messages (``role``/``content``), untrusted text already quoted.
            schema_name: the json_schema ``name`` (servers may dispatch on it).
            schema: the JSON schema of the answer.
            model: pydantic model the answer must validate into (``extra="forbid"`` models
                reject extra fields); None returns the parsed dict.
            context: validation context handed to the model's validators (e.g. a taxonomy).
            deadline: ``time.monotonic()`` value by which the call, retries included, must
                be over; waiting for a concurrency slot counts too.
            temperature: override, still capped at 0.3.
            max_tokens: override of the completion token cap.
        """
        temp = self.temperature if temperature is None else min(temperature, MAX_TEMPERATURE)
        started = time.monotonic()
        attempts = 0
        failure: _Failure | None = None
        while True:
            remaining = self._remaining(deadline)
            if remaining is not None and remaining <= 0.01:
                failure = failure or _Failure(DEADLINE, "no time left before the deadline")
                if failure.reason != DEADLINE:
                    failure = _Failure(
                        failure.reason, failure.detail + " (deadline reached, no more retries)"
                    )
                break
            attempts += 1
            try:
                response = await self._attempt(
                    messages, schema_name, schema, temp, max_tokens, deadline
                )
            except _Failure as exc:
                failure = exc
                if not is_retryable(exc.reason) or attempts > self.max_retries:
                    break
                delay = self._backoff(attempts, exc.retry_after_s)
                left = self._remaining(deadline)
                if left is not None and delay >= left:
                    failure = _Failure(
                        exc.reason, exc.detail + " (no time left to retry before the deadline)"
                    )
                    break
                log.debug(
                    "LLM %s failed (%s); retry %d in %.2fs", schema_name, exc, attempts, delay
                )
                await asyncio.sleep(delay)
                continue
            return self._with_prompt(
                self._finish(response, model, context, started, attempts), messages
            )
        return self._with_prompt(self._failed(failure, started, attempts), messages)

    def _with_prompt(
        self, result: LlmResult[Any], messages: Sequence[Mapping[str, str]]
    ) -> LlmResult[Any]:
        """The result carrying the prompt as sent (capped), unless prompts stay unlogged."""
        if not self.log_prompts:
            return result
        text = json.dumps(
            [{"role": m.get("role", ""), "content": m.get("content", "")} for m in messages],
            ensure_ascii=False,
        )
        return replace(result, prompt=text[:PROMPT_LOG_CHARS])

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    async def _attempt(
        self,
        messages: Sequence[Mapping[str, str]],
        schema_name: str,
        schema: Mapping[str, Any],
        temperature: float,
        max_tokens: int | None,
        deadline: float | None,
    ) -> Any:
        import openai

        remaining = self._remaining(deadline)
        slots = self._semaphore()
        try:  # a free slot is awaited within the deadline only, not the attempt's timeout
            async with asyncio.timeout(remaining):
                await slots.acquire()
        except TimeoutError as exc:
            raise _Failure(DEADLINE, "no free concurrency slot before the deadline") from exc
        left = self._remaining(deadline)
        budget = self.timeout_s if left is None else max(0.01, min(self.timeout_s, left))
        deadline_bound = left is not None and left < self.timeout_s
        try:
            async with asyncio.timeout(budget):
                return await self.sdk.chat.completions.create(
                    model=self.model,
                    messages=[dict(m) for m in messages],
                    temperature=temperature,
                    response_format=response_format(schema_name, schema),
                    max_tokens=max_tokens or self.max_tokens,
                    timeout=budget,
                )
        except (TimeoutError, openai.APITimeoutError) as exc:
            reason = DEADLINE if deadline_bound else TIMEOUT
            raise _Failure(reason, f"no answer within {budget:.2f}s") from exc
        except openai.APIStatusError as exc:
            retry_after = _retry_after(exc)
            raise _Failure(f"http_{exc.status_code}", short(str(exc.message)), retry_after) from exc
        except openai.APIConnectionError as exc:
            raise _Failure(CONNECTION, short(f"{exc}: {exc.__cause__ or ''}")) from exc
        finally:
            slots.release()

    def _finish(
        self,
        response: Any,
        model: type[BaseModel] | None,
        context: Mapping[str, Any] | None,
        started: float,
        attempts: int,
    ) -> LlmResult[Any]:
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        common: dict[str, Any] = {
            "model": str(getattr(response, "model", None) or self.model),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "latency_ms": (time.monotonic() - started) * 1000,
            "attempts": attempts,
            "cost_usd": self.cost(tokens_in, tokens_out),
        }
        answer = read_answer(response, model, context)
        reason = answer.reason
        self._account(common, reason)
        if reason is not None:
            return LlmResult(
                ok=False,
                value=None,
                reason=reason,
                detail=answer.detail,
                content=answer.content,
                validation_errors=answer.errors,
                **common,
            )
        return LlmResult(ok=True, value=answer.value, content=answer.content, **common)

    def _failed(self, failure: _Failure | None, started: float, attempts: int) -> LlmResult[Any]:
        assert failure is not None
        common: dict[str, Any] = {
            "model": self.model,
            "latency_ms": (time.monotonic() - started) * 1000,
            "attempts": attempts,
        }
        self._account(common, failure.reason)
        return LlmResult(
            ok=False, value=None, reason=failure.reason, detail=failure.detail, **common
        )

    def _account(self, common: Mapping[str, Any], reason: str | None) -> None:
        stats = self.stats
        stats.calls += 1
        stats.attempts += int(common.get("attempts", 0))
        stats.tokens_in += int(common.get("tokens_in", 0))
        stats.tokens_out += int(common.get("tokens_out", 0))
        stats.cost_usd += float(common.get("cost_usd", 0.0))
        if reason is None:
            stats.ok += 1
        else:
            stats.failures[reason] += 1


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
