"""The OpenAI-compatible client against our scripted HTTP server (the real SDK over real
HTTP; nothing patched): accounting, retries with backoff, timeouts, deadlines, bounded
concurrency, validation, and exactly why a call failed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from recsys.exceptions import ConfigurationError
from recsys.llm.client import LlmClient
from recsys.llm.exceptions import LlmCallError
from stack.embedded import free_port
from streams.settings import Settings
from testkit.llm_server import SIMULATED_MODEL, SimulatedLlmServer
from workers.capabilities import check_capabilities

REPO = Path(__file__).resolve().parents[2]


def http(url: str, body: Any = None) -> tuple[int, Any]:
    """(status, JSON body) of a GET, or of a POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    said: str


def echo(messages: object, schema: object, mode: str) -> dict[str, object]:
    answer: dict[str, object] = {"said": "hello"}
    if mode == "extra_fields":
        answer["secret"] = 1
    return answer


SCHEMA = {"type": "object", "properties": {"said": {"type": "string"}}, "required": ["said"]}
MESSAGES = [{"role": "system", "content": "Say hello."}, {"role": "user", "content": "hi there"}]


@pytest.fixture
def server(llm_server: SimulatedLlmServer) -> SimulatedLlmServer:
    llm_server.register("echo", echo)
    return llm_server


def client_for(server: SimulatedLlmServer, **overrides: object) -> LlmClient:
    params: dict[str, object] = {
        "base_url": server.base_url,
        "model": SIMULATED_MODEL,
        "timeout_s": 2.0,
        "max_retries": 2,
        "backoff_base_s": 0.05,
        "price_in_per_1k": 0.5,
        "price_out_per_1k": 1.5,
    }
    params.update(overrides)
    return LlmClient(**params)  # type: ignore[arg-type]


async def call(client: LlmClient, **kwargs: object):  # type: ignore[no-untyped-def]
    return await client.complete(MESSAGES, schema_name="echo", schema=SCHEMA, model=Echo, **kwargs)  # type: ignore[arg-type]


async def test_a_good_call_is_validated_and_accounted(server: SimulatedLlmServer) -> None:
    client = client_for(server, temperature=0.3)
    try:
        result = await call(client, temperature=0.9)
    finally:
        await client.aclose()
    assert result.ok and result.value == Echo(said="hello") and result.reason is None
    assert result.attempts == 1 and result.model == SIMULATED_MODEL
    assert (result.tokens_in, result.tokens_out) == (4, 2)  # the server counts words
    assert result.cost_usd == pytest.approx(4 / 1000 * 0.5 + 2 / 1000 * 1.5)
    assert result.latency_ms > 0
    (request,) = server.requests
    assert request.temperature == 0.3  # capped
    assert request.model == SIMULATED_MODEL and request.messages == MESSAGES
    assert request.response_format is not None
    assert request.response_format["type"] == "json_schema"
    assert request.response_format["json_schema"] == {
        "name": "echo",
        "schema": SCHEMA,
        "strict": True,
    }
    assert client.stats.calls == 1 and client.stats.tokens_in == 4


@pytest.mark.parametrize(
    ("mode", "reason", "attempts"),
    [
        ("http_429", "http_429", 3),  # retried with backoff, then given up
        ("http_500", "http_500", 3),
        ("http_503", "http_503", 3),
        ("malformed_json", "invalid_json", 1),  # an answer: not retried by the client
        ("empty", "empty_response", 1),
        ("extra_fields", "schema_violation", 1),
    ],
)
async def test_failures_say_exactly_why(
    server: SimulatedLlmServer, mode: str, reason: str, attempts: int
) -> None:
    server.set_behaviour(mode)
    client = client_for(server)
    try:
        result = await call(client)
    finally:
        await client.aclose()
    assert not result.ok and result.value is None
    assert (result.reason, result.attempts) == (reason, attempts)
    assert server.calls == attempts
    assert client.stats.failures[reason] == 1
    if reason == "schema_violation":
        assert result.validated is False
        assert any("secret" in e and "Extra inputs" in e for e in result.validation_errors)
    with pytest.raises(LlmCallError, match=reason):
        result.unwrap()


async def test_transient_failures_are_retried_until_it_works(server: SimulatedLlmServer) -> None:
    server.set_behaviour("honest", fail_first=2, fail_with="http_429")
    client = client_for(server)
    try:
        result = await call(client)
    finally:
        await client.aclose()
    assert result.ok and result.attempts == 3
    assert [r.answered_as for r in server.requests] == ["http_429", "http_429", "honest"]


async def test_a_slow_endpoint_times_out_and_a_deadline_bounds_the_whole_call(
    server: SimulatedLlmServer,
) -> None:
    server.set_behaviour("slow", delay_s=30)
    client = client_for(server, timeout_s=0.3, max_retries=1)
    try:
        timed_out = await call(client)
        assert (timed_out.reason, timed_out.attempts) == ("timeout", 2)
        started = time.monotonic()
        bounded = await call(client, deadline=time.monotonic() + 0.2)
        assert bounded.reason == "deadline" and bounded.attempts == 1
        assert time.monotonic() - started < 20  # bounded (not the server's 30 s)
        expired = await call(client, deadline=time.monotonic() - 1)
        assert (expired.reason, expired.attempts) == ("deadline", 0)
    finally:
        await client.aclose()


async def test_connection_refused(server: SimulatedLlmServer) -> None:
    client = LlmClient(
        base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=1, backoff_base_s=0.01
    )
    try:
        result = await call(client)
    finally:
        await client.aclose()
    assert (result.reason, result.attempts) == ("connection", 2)


async def test_concurrency_is_bounded(server: SimulatedLlmServer) -> None:
    server.set_behaviour("slow", delay_s=0.3)
    client = client_for(server, max_concurrency=2, timeout_s=20)
    try:
        results = await asyncio.gather(*(call(client) for _ in range(6)))
    finally:
        await client.aclose()
    assert all(r.ok for r in results)
    assert server.max_inflight == 2


def test_temperature_above_0_3_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"0\.\.0\.3"):
        LlmClient(base_url="http://x/v1", model="m", temperature=0.5)


def test_from_settings_needs_an_endpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="STREAMREC_LLM_BASE_URL"):
        LlmClient.from_settings(Settings(home=tmp_path))
    client = LlmClient.from_settings(
        Settings(home=tmp_path, llm_base_url="http://x/v1", llm_model="m", llm_max_retries=5)
    )
    assert (client.model, client.max_retries, client.temperature) == ("m", 5, 0.2)


def test_doctor_sees_the_simulated_endpoint(server: SimulatedLlmServer, tmp_path: Path) -> None:
    _, models = http(server.base_url + "/models")
    assert models["data"][0]["id"] == SIMULATED_MODEL and "simulated" in SIMULATED_MODEL
    settings = Settings(
        home=tmp_path,
        bootstrap_servers="127.0.0.1:1",
        llm_base_url=server.base_url,
        llm_model=SIMULATED_MODEL,
    )
    caps = {c.name: c for c in check_capabilities(settings, timeout_s=1)}
    assert caps["LLM endpoint"].status == "on" and SIMULATED_MODEL in caps["LLM endpoint"].detail


def test_the_server_runs_standalone_and_is_scripted_over_http(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "testkit.llm_standalone", "--port", str(port), "--mode", "http_500"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                http(base + "/v1/models")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        body = {
            "model": "x",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "enrichment", "schema": {}},
            },
        }
        assert http(base + "/v1/chat/completions", body)[0] == 500
        http(base + "/_control/behaviour", {"mode": "honest"})
        _, answer = http(base + "/v1/chat/completions", body)
        assert set(json.loads(answer["choices"][0]["message"]["content"])) >= {"summary", "tags"}
        _, recorded = http(base + "/_control/requests")
        assert [r["answered_as"] for r in recorded] == ["http_500", "honest"]
    finally:
        proc.terminate()
        proc.wait(10)
