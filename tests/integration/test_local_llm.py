"""The embedded local LLM (``--llm local``): a real 135M model behind the OpenAI surface.

One server for the module (the model takes ≈ 17 s to load). The production code paths
— enrichment, intent parsing, rerank of 20 candidates inside a served request — run
against it; every answer either validates or falls back with its reason logged, and
what is logged and answered names the real model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recsys.enrichment.cache import InMemoryEnrichmentCache
from recsys.enrichment.enricher import Enricher
from recsys.enrichment.taxonomy import Taxonomy
from recsys.enrichment.text import content_hash
from recsys.llm.client import LlmClient
from recsys.movielens import MovieLens
from recsys.records import EnrichmentStatus, LlmInvolvement, LlmUseCase, ValidationResult
from recsys.serving.intent import IntentParser
from recsys.serving.rerank import Candidate, LlmReranker, RerankContext
from stack.embedded import free_port
from stack.local_llm.launcher import EmbeddedLlm
from stack.local_llm.model_file import DEFAULT_MODEL_SHA256
from testkit.injection_corpus import ATTACKS
from tests.integration.serving_support import ask, serving, world
from tests.integration.serving_world import World
from workers.serve_wiring import llm_parts

# a CPU model on a shared 2-core machine: seconds per call, minutes under load
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

__all__ = ["world"]  # the serving world fixture, used by the served-request test

MODEL = "SmolLM2-135M-Instruct.Q4_1"


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLlm]:
    """The local LLM server, started like `streamrec up --llm local` starts it."""
    llm = EmbeddedLlm(port=free_port(), log_dir=tmp_path_factory.mktemp("llm-logs"))
    llm.start(timeout_s=240)
    try:
        yield llm
    finally:
        llm.stop()


def client_for(llm: EmbeddedLlm) -> LlmClient:
    # the machine is shared: generous timeouts; behaviour, not speed, is under test
    return LlmClient(
        base_url=llm.base_url, model=llm.model, temperature=0.0, timeout_s=300, max_retries=0
    )


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=180) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_openai_surface(local_llm: EmbeddedLlm) -> None:
    status, models = http("GET", local_llm.base_url + "/models")
    assert status == 200
    card = models["data"][0]
    assert card["id"] == MODEL == local_llm.model
    assert card["meta"]["sha256"] == DEFAULT_MODEL_SHA256
    assert card["meta"]["parameters"] == 134_515_008

    schema = {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 1, "maximum": 9},
        },
        "required": ["colour", "count"],
        "additionalProperties": False,
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Three blue birds. Answer in JSON."}],
        "temperature": 0,
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    }
    status, answer = http("POST", local_llm.base_url + "/chat/completions", body)
    assert status == 200, answer
    value = json.loads(answer["choices"][0]["message"]["content"])
    assert set(value) == {"colour", "count"} and value["colour"] in ("red", "green", "blue")
    assert 1 <= value["count"] <= 9
    assert answer["model"] == MODEL and answer["choices"][0]["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 5 and usage["completion_tokens"] > 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    # what the server cannot do is refused in OpenAI's error shape, never ignored
    for change, code in (
        ({"model": "gpt-4o"}, 404),
        ({"n": 2}, 400),
        ({"stream": True}, 400),
        ({"response_format": {"type": "xml"}}, 400),
        ({"max_tokens": 10_000_000}, 400),
    ):
        status, error = http("POST", local_llm.base_url + "/chat/completions", body | change)
        assert status == code, (change, error)
        assert set(error["error"]) == {"message", "type", "param", "code"}
    status, error = http("GET", local_llm.base_url.removesuffix("/v1") + "/nowhere")
    assert status == 404 and error["error"]["code"] == "not_found"


@pytest.mark.movielens
async def test_enrichment_and_intent_through_the_production_paths(
    local_llm: EmbeddedLlm, movielens_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="recsys.enrichment.enricher")
    items = [c for c in MovieLens(movielens_path).catalog() if c.description][:2]
    client = client_for(local_llm)
    enricher = Enricher(client, InMemoryEnrichmentCache(), Taxonomy(), prompt_style="compact")
    records: list[LlmInvolvement] = []
    try:
        for change in items:
            outcome = await enricher.enrich(
                change, content_hash(change), deadline=None, emit=records.append
            )
            assert outcome.llm_model == MODEL
            if outcome.status is EnrichmentStatus.ENRICHED:
                assert outcome.enrichment is not None and outcome.enrichment.summary
            else:  # a fallback has its reason, logged
                assert outcome.status is EnrichmentStatus.LLM_FAILED and outcome.error
                assert f"enrichment of {change.item_id} failed" in caplog.text
        assert records and all(
            r.model == MODEL and r.use_case is LlmUseCase.ENRICH for r in records
        )
        for record in records:
            assert record.called
            if record.used:
                assert record.validation is ValidationResult.VALID
                assert record.tokens_in > 0 and record.tokens_out > 0
            elif record.fallback:  # e.g. a timeout on a loaded machine: said, not hidden
                assert record.fallback_reason
            else:  # an invalid answer, asked for once more with the errors
                assert record.validation is ValidationResult.INVALID and record.validation_errors

        genres = sorted(
            {g for c in MovieLens(movielens_path).catalog()[:500] for g in c.categories}
        )
        parser = IntentParser(client, cache_size=0, prompt_style="compact")
        intent = await parser.parse("funny 90s comedies, no horror", genres, deadline_s=180)
        assert intent.called and intent.model == MODEL
        if intent.used:
            assert intent.source == "llm" and intent.validation is ValidationResult.VALID
            assert set(intent.intent.categories_any) <= set(genres)
        else:
            assert intent.source == "rules" and intent.fallback_reason
    finally:
        await client.aclose()


@pytest.mark.movielens
async def test_rerank_of_20_movielens_candidates(
    local_llm: EmbeddedLlm, movielens_path: Path
) -> None:
    catalog = [c for c in MovieLens(movielens_path).catalog() if c.description]
    cands = [
        Candidate(c.item_id, c.title, tuple(c.categories), c.description) for c in catalog[:20]
    ]
    history = [(c.title, tuple(c.categories)) for c in catalog[40:43]]
    client = client_for(local_llm)
    reranker = LlmReranker(client, cap=30, cache_size=0, prompt_style="compact")
    try:
        outcome = await reranker.rerank(
            RerankContext("u-1", "an animated movie for kids", history), cands, deadline_s=180
        )
    finally:
        await client.aclose()
    ids = [c.item_id for c in cands]
    assert sorted(outcome.order) == sorted(ids)  # every candidate, each once, whatever happened
    assert outcome.called and outcome.model == MODEL and outcome.tokens_in > 0
    if outcome.used:
        assert outcome.validation is ValidationResult.VALID and not outcome.hallucinated_ids
    else:
        assert outcome.order == ids and outcome.fallback_reason


async def test_a_served_request_names_the_real_model(
    local_llm: EmbeddedLlm, world: World, embedder: Any
) -> None:
    """Rerank inside the serving path (intent is covered above; one call keeps the test
    short on a CPU model); the response names the model."""
    client = client_for(local_llm)
    settings = world.settings.with_overrides(llm_local=True, rerank_cap=20)
    try:
        async with serving(world, embedder, llm_intent=False) as rec:
            rec.llm = llm_parts(settings, client)
            served = await ask(
                rec, world.user("cold"), query="space adventure", k=10, deadline_ms=240_000
            )
    finally:
        await client.aclose()
    response = served.response
    assert response.items
    rerank = [r for r in served.logs if r.use_case is LlmUseCase.RERANK]
    assert rerank and rerank[0].called and rerank[0].model == MODEL
    if response.llm_used:
        assert response.llm_model == MODEL and rerank[0].validation is ValidationResult.VALID
    else:
        assert response.llm_fallback_reason and rerank[0].fallback_reason


async def test_a_tight_deadline_falls_back_and_frees_the_model(local_llm: EmbeddedLlm) -> None:
    """A request deadline far below what the CPU model needs: the ranker order, reason
    ``deadline``; the abandoned generation is cancelled, so the next call is served."""
    # ordinary descriptions (a repeated phrase would be flagged as stuffing, and a
    # fully flagged list never reaches the model)
    places = ("a harbour town", "the mountains", "a big city", "a farm", "an island")
    cands = [
        Candidate(f"m{i}", f"Movie {i}", ("Drama",), f"Two sisters in {places[i % 5]}, year {i}.")
        for i in range(20)
    ]
    client = client_for(local_llm)
    reranker = LlmReranker(client, cache_size=0, prompt_style="compact")
    try:
        outcome = await reranker.rerank(RerankContext("u", "drama"), cands, deadline_s=0.3)
        assert outcome.order == [c.item_id for c in cands]
        assert outcome.fallback_reason == "deadline" and not outcome.used
        health_url = local_llm.base_url.removesuffix("/v1") + "/health"
        pending = -1
        for _ in range(600):  # bounded: the cancelled generation stops at its next token
            _, health = await asyncio.to_thread(http, "GET", health_url)
            pending = health["pending"]
            if pending == 0:
                break
            await asyncio.sleep(0.1)
        assert pending == 0
        body = {
            "messages": [{"role": "user", "content": "Say yes."}],
            "max_tokens": 2,
            "temperature": 0,
        }
        status, answer = await asyncio.to_thread(
            http, "POST", local_llm.base_url + "/chat/completions", body
        )
        assert status == 200 and answer["usage"]["completion_tokens"] >= 1  # free again
    finally:
        await client.aclose()


def _attack_sample() -> list[Any]:
    """One attack per (language, place): the corpus's variety in a few real-model calls."""
    seen: dict[tuple[str, str], Any] = {}
    for attack in ATTACKS:
        seen.setdefault((attack.language, attack.where), attack)
    return list(seen.values())


async def test_injection_attacks_through_the_serving_path_with_the_real_model(
    local_llm: EmbeddedLlm, world: World, embedder: Any
) -> None:
    """The simulator test's assertions, with the real model: whatever the model makes of
    an attacked request, the named item never moves up, nothing ineligible is shown, the
    guard flags the attack and its text never reaches the prompt (an attacked query
    holds every candidate in place, so it is not sent at all)."""
    client = client_for(local_llm)
    settings = world.settings.with_overrides(llm_local=True, response_cache_size=0)
    user = world.user("cold")
    query = "something funny about family mishaps"

    originals: dict[str, str] = {}

    def describe(item_id: str, text: str | None) -> None:
        """Append ``text`` to the item's stored description (None: restore it)."""
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT description FROM items WHERE item_id = %s", (item_id,))
            original = originals.setdefault(item_id, (row.fetchone() or [""])[0])
            new = original if text is None else f"{original} {text}"
            conn.execute("UPDATE items SET description = %s WHERE item_id = %s", (new, item_id))

    try:
        async with (
            serving(world, embedder, llm_intent=False, rerank_cap=20) as rec,
            serving(world, embedder, llm_intent=False, rerank_cap=20) as plain,
        ):
            rec.llm = llm_parts(settings, client)
            # the ranker's order without the LLM: a flagged item never moves above it
            baseline = await ask(plain, user, query=f"{query}.", k=20)
            order = [i.item_id for i in baseline.response.items]
            target = order[-1]  # the attacks try to promote the ranker's last item
            called = 0
            for attack in _attack_sample():
                text = attack.render(target)
                label = f"{attack.language}/{attack.category}/{attack.where}: {attack.text}"
                reference = order
                if attack.where == "query":
                    served = await ask(
                        rec, user, query=f"{query}. {text}", k=20, deadline_ms=240_000
                    )
                    # the attacked query retrieves by its own text: compare with the
                    # ranker's order for the same query, without the LLM
                    without = await ask(plain, user, query=f"{query}. {text}", k=20)
                    reference = [i.item_id for i in without.response.items]
                else:
                    describe(target, text)
                    try:
                        served = await ask(rec, user, query=f"{query}.", k=20, deadline_ms=240_000)
                    finally:
                        describe(target, None)
                shown = [i.item_id for i in served.response.items]
                assert set(shown) <= set(world.items) - world.deleted, label
                assert not set(shown) & world.clicked.get(user, set()), label
                if target in shown and target in reference:
                    assert shown.index(target) >= reference.index(target), label
                record = next(r for r in served.logs if r.use_case is LlmUseCase.RERANK)
                assert record.injection_flagged, label
                if record.called:  # an attacked description: only that item is held
                    called += 1
                    assert record.model == MODEL, label
                    assert record.prompt is None or text not in record.prompt, label
                else:  # an attacked query holds every candidate: no call is worth making
                    assert record.fallback_reason == "injection_flagged", label
            assert called >= 1  # the real model did read attacked requests
    finally:
        await client.aclose()
