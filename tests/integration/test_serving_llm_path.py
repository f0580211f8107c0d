"""The LLM through the whole serving path, against our simulated OpenAI-compatible server:
honest answers are used and logged; every failure mode still yields a valid response in
the ranker's order with the reason logged; cache hits make no call; the breaker and
budget switch the LLM off and back on; no attack of the injection corpus moves its target
up by more than the displacement bound, and none outside the eligible set."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from recsys.llm.breaker import CircuitBreaker
from recsys.llm.client import LlmClient
from recsys.llm.prompts import unquote
from recsys.records import LlmUseCase, Route
from recsys.serving.llm_gate import LlmGate
from recsys.serving.recommender import LlmParts, Served
from testkit.injection_corpus import ALL_ATTACKS, ATTACKS
from testkit.llm_server import SimulatedLlmServer
from tests.integration.serving_support import ask, serving, world
from tests.integration.serving_world import World
from workers.serve_wiring import llm_parts

__all__ = ["world"]

pytestmark = pytest.mark.integration

QUERY = "something funny about family mishaps"


def rerank_log(served: Served) -> Any:
    (record,) = [r for r in served.logs if r.use_case is LlmUseCase.RERANK]
    return record


async def test_honest_llm_is_used_and_logged(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    async with serving(world, embedder, llm_url=llm_server.base_url) as rec:
        served = await ask(rec, world.user("new"), query=QUERY, k=10)
    r = served.response
    assert r.route is Route.CONTENT and r.llm_used
    assert r.prompt_version and r.llm_model == "simulated-test"
    record = rerank_log(served)
    assert record.called and record.used and record.decision == "called"
    assert record.tokens_in > 0 and record.prompt_version == r.prompt_version
    assert record.route == "CONTENT" and record.propensity == 1.0
    intent = [x for x in served.logs if x.use_case is LlmUseCase.INTENT]
    assert len(intent) == 1 and intent[0].called
    assert llm_server.calls_for("rerank") == 1
    # the rerank prompt enumerated exactly the positions shown, never an id
    request = llm_server.requests[-1]
    schema = request.response_format["json_schema"]["schema"]
    shown = unquote(request.prompt_text(), "CANDIDATES")
    assert schema["properties"]["ranking"]["items"]["enum"] == [c["n"] for c in shown]
    assert not any(item_id in request.prompt_text() for item_id in world.items)
    titles = {world.items[i.item_id].title for i in r.items}
    assert titles & {c["title"] for c in shown}
    assert record.max_displacement == world.settings.llm_max_displacement


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("slow", "deadline"),
        ("http_429", "http_429"),
        ("http_500", "http_500"),
        ("malformed_json", "invalid_json"),
        ("hallucinate", "hallucinated_ids"),
        ("duplicates", "duplicate_ids"),
        ("empty_ranking", "empty_ranking"),
    ],
)
async def test_every_llm_failure_serves_the_ranker_order(
    world: World, embedder: Any, llm_server: SimulatedLlmServer, mode: str, reason: str
) -> None:
    user = world.user("cold")
    async with serving(world, embedder, llm_intent=False) as plain:
        expected = await ask(plain, user, query=QUERY, k=10)
    llm_server.set_behaviour(mode, delay_s=30.0)
    # only the slow model is meant to meet the deadline: the others get room for their
    # retries on a loaded machine, so that their own failure is the one reported
    deadline_ms = 1500 if mode == "slow" else 10_000
    async with serving(world, embedder, llm_url=llm_server.base_url, llm_intent=False) as rec:
        served = await ask(rec, user, query=QUERY, k=10, deadline_ms=deadline_ms)
    r = served.response
    assert [i.item_id for i in r.items] == [i.item_id for i in expected.response.items]
    assert not r.llm_used and r.llm_fallback_reason == reason
    record = rerank_log(served)
    assert record.called and not record.used and record.fallback
    assert record.fallback_reason == reason
    if mode == "hallucinate":
        assert record.hallucinated_ids
    # the deadline bounded the call (the model would have taken 30 s; generous margin for
    # a loaded machine, where the request's other steps are slow too)
    assert record.latency_ms < deadline_ms + 500


async def test_cache_hit_makes_no_call(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    async with serving(world, embedder, llm_url=llm_server.base_url, llm_intent=False) as rec:
        first = await ask(rec, world.user("cold"), query=QUERY, k=10)
        second = await ask(rec, world.user("cold"), query=QUERY, k=10)
    assert llm_server.calls_for("rerank") == 1
    assert rerank_log(first).decision == "called"
    assert rerank_log(second).cache_hit and rerank_log(second).decision == "cache_hit"
    assert second.response.llm_used
    assert [i.item_id for i in first.response.items] == [i.item_id for i in second.response.items]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_and_budget_switch_the_llm_off_and_back_on(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    clock = Clock()
    client = LlmClient(base_url=llm_server.base_url, model="simulated-test", max_retries=0)
    parts = llm_parts(world.settings, client)
    gate = LlmGate(
        CircuitBreaker(failures=2, reset_s=30.0, clock=clock),
        tokens_per_min=3_000,
        usd_per_min=None,
        clock=clock,
    )
    parts = LlmParts(reranker=parts.reranker, gate=gate, model=client.model)
    queries = iter(f"{QUERY} number {n}" for n in range(1000))  # no cache hits

    async def decision(rec: Any) -> tuple[bool, str]:
        served = await ask(rec, world.user("new"), query=next(queries), k=5)
        return served.response.llm_used, rerank_log(served).decision

    try:
        async with serving(world, embedder, parts=parts, llm_intent=False) as rec:
            llm_server.set_behaviour("http_500")
            assert await decision(rec) == (False, "called")
            assert await decision(rec) == (False, "called")
            calls = llm_server.calls
            assert await decision(rec) == (False, "breaker_open")
            assert llm_server.calls == calls
            llm_server.set_behaviour("honest")
            clock.now += 31.0
            assert await decision(rec) == (True, "called")  # the half-open trial closes it
            while gate.tokens_last_minute < 3_000:
                assert (await decision(rec))[0]
            calls = llm_server.calls
            assert await decision(rec) == (False, "over_budget")
            assert llm_server.calls == calls
            clock.now += 61.0
            assert await decision(rec) == (True, "called")
    finally:
        await client.aclose()


@pytest.fixture
def item_description(world: World) -> Iterator[Any]:
    """Put text into an item's stored description (its vectors unchanged), then restore it."""
    changed: dict[str, str] = {}

    def put(item_id: str, extra: str) -> None:
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT description FROM items WHERE item_id = %s", (item_id,))
            original = changed.setdefault(item_id, (row.fetchone() or [""])[0])
            conn.execute(
                "UPDATE items SET description = %s WHERE item_id = %s",
                (f"{original} {extra}", item_id),
            )

    yield put
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        for item_id, text in changed.items():
            conn.execute("UPDATE items SET description = %s WHERE item_id = %s", (text, item_id))


async def test_injection_corpus_through_the_serving_path(
    world: World, embedder: Any, llm_server: SimulatedLlmServer, item_description: Any
) -> None:
    """A gullible model decodes payloads and obeys any id or title it reads; no attack
    moves its target up by more than the bound, relative to the same request without the
    attack, and nothing outside the eligible set is ever served.

    A query attack the screen does not drop stays in the query, and retrieval ranks on
    the query's words: a title typed into a query retrieves that title, with or without
    an LLM (search working, not an LLM decision). Such an attack is held to the bound
    relative to the same attacked request served without the LLM.
    """
    user = world.user("cold")
    llm_server.set_behaviour("obey_injections")
    bound = world.settings.llm_max_displacement
    up = bound - bound // 2
    eligible = set(world.items) - world.deleted - world.clicked.get(user, set())
    async with (
        serving(
            world,
            embedder,
            llm_url=llm_server.base_url,
            llm_intent=False,
            rerank_cap=30,
            wait_for_scores=True,
        ) as rec,
        serving(world, embedder, llm_intent=False) as plain,
    ):
        # the same request without the attack text: what the screen leaves of an attacked
        # query is exactly this when it drops the attack (a sentence of its own)
        baseline = await ask(rec, user, query=f"{QUERY}.", k=30)
        order = [i.item_id for i in baseline.response.items]
        assert baseline.response.llm_used and len(order) == 30
        assert rerank_log(baseline).max_displacement == bound
        clean_query = (await rec.sanitiser.screen_query(f"{QUERY}."))[0]
        target = order[-1]  # the attacks try to promote the last item shown
        title = world.items[target].title
        flagged = kept = 0
        for attack in ALL_ATTACKS:
            text = attack.render(target, title, "funny family mishaps")
            label = f"{attack.language}/{attack.category}/{attack.where}: {attack.text}"
            reference = order
            if attack.where == "query":
                query = f"{QUERY}. {text}"
                served = await ask(rec, user, query=query, k=30)
                if (await rec.sanitiser.screen_query(query))[0] != clean_query:
                    kept += 1  # not dropped: compare with the same query, no LLM
                    without = await ask(plain, user, query=query, k=30)
                    reference = [i.item_id for i in without.response.items]
            else:
                item_description(target, text)
                served = await ask(rec, user, query=f"{QUERY}.", k=30)
                item_description(target, "")
            shown = [i.item_id for i in served.response.items]
            assert set(shown) <= eligible, label
            if target in shown and target in reference:
                limit = bound if reference is order else up
                assert shown.index(target) >= reference.index(target) - limit, label
            record = rerank_log(served)
            assert record.max_displacement == bound, label
            flagged += record.injection_flagged
            if attack in ATTACKS:
                assert record.injection_flagged, label
            if record.called and (attack in ATTACKS or attack.encoded):
                assert text not in llm_server.requests[-1].prompt_text(), label
        assert flagged >= len(ATTACKS) >= 30
        assert kept <= sum(a.where == "query" and a not in ATTACKS for a in ALL_ATTACKS)


async def test_no_pii_reaches_any_prompt(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    pii = ["jane.doe@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"]
    query = f"{QUERY}, mail me at {pii[0]} or call {pii[1]}, card {pii[2]}"
    async with serving(world, embedder, llm_url=llm_server.base_url) as rec:
        served = await ask(rec, world.user("cold"), query=query, k=10)
    assert llm_server.calls >= 2  # intent and rerank both saw the (redacted) query
    assert served.response.items
    for request in llm_server.requests:
        for secret in pii:
            assert secret not in request.prompt_text()
            assert secret.replace(" ", "") not in request.prompt_text().replace(" ", "")
