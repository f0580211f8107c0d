"""Conversations on the real embedded Postgres (and broker): a scripted three-turn dialogue
asks, asks a narrower question, then recommends items whose justifications cite the
signals of turns 1-3; the state survives a restart and a redelivered turn changes
nothing; a warm user is asked less; "just show me" is a way out; no question repeats;
prompt-injection and PII turns behave like single requests do."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest

from recsys import db
from recsys.dialogue.engine import Dialogue
from recsys.dialogue.store import PgConversations
from recsys.records import (
    ConversationTurn,
    DialogueAction,
    EvidenceKind,
    LlmUseCase,
    RecRequest,
    RecResponse,
)
from recsys.serving.recommender import Recommender, Served
from recsys.users.state import Position
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from testkit.injection_corpus import ATTACKS
from testkit.llm_server import SimulatedLlmServer
from tests.helpers import await_until
from tests.integration.serving_support import serving, world
from tests.integration.serving_world import World
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever
from workers.serve_wiring import build_dialogue
from workers.serve_worker import ServeWorker

__all__ = ["world"]

pytestmark = pytest.mark.integration


@asynccontextmanager
async def talking(
    world: World, embedder: Any, llm_url: str | None = None, **settings: Any
) -> AsyncIterator[Dialogue]:
    """A dialogue engine over the world's database, as the serve worker wires it."""
    async with serving(world, embedder, llm_url=llm_url) as rec:
        pool = db.async_pool(world.dsn, min_size=1, max_size=2, name="dialogue-test")
        await pool.open(wait=True)
        try:
            yield _dialogue(world, rec, pool, **settings)
        finally:
            await pool.close()


def _dialogue(world: World, rec: Recommender, pool: Any, **settings: Any) -> Dialogue:
    client = rec.llm.intent.client if rec.llm.intent is not None else None
    return build_dialogue(world.settings.with_overrides(**settings), pool, rec, client)


class Talk:
    """One conversation's turns, numbered as they go."""

    def __init__(self, dialogue: Dialogue, user_id: str) -> None:
        self.dialogue, self.user_id = dialogue, user_id
        self.conversation_id = f"c-{uuid.uuid4().hex[:10]}"
        self.turn = 0
        self.requests: list[RecRequest] = []

    async def say(self, text: str, *, k: int = 5, show_now: bool = False) -> Served:
        self.turn += 1
        request = RecRequest(
            user_id=self.user_id,
            k=k,
            deadline_ms=10_000,
            conversation=ConversationTurn(
                conversation_id=self.conversation_id, turn=self.turn, text=text, show_now=show_now
            ),
        )
        self.requests.append(request)
        return await self.dialogue.serve(request, position=Position("tid", 0, self.turn))


def reply_of(served: Served | RecResponse) -> Any:
    response = served.response if isinstance(served, Served) else served
    assert response.conversation is not None
    return response.conversation


def check_grounded(response: RecResponse, turns: set[int]) -> None:
    """Every item cites stated preferences of exactly these turns, and only given ones."""
    reply = reply_of(response)
    given = {(s.turn, s.value) for s in reply.signals}
    assert response.items
    full = 0
    for item in response.items:
        stated = [e for e in item.evidence if e.kind is EvidenceKind.STATED_PREFERENCE]
        soft = any("soft match" in e.value for e in item.evidence)
        # an item passing the stated constraints cites every turn; a soft match filling a
        # short list (marked so) cites only what it satisfies
        cited = {e.turn for e in stated}
        assert cited <= turns if soft else cited == turns, item
        full += cited == turns
        for e in stated:
            # the cited fact names a signal of its turn (an era adds the item's year)
            assert any(t == e.turn and (v in e.value or e.value in v) for t, v in given), e
            assert e.value in item.explanation
    assert full >= 1


async def test_three_turns_ask_narrow_then_recommend_grounded(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    async with talking(world, embedder, llm_url=llm_server.base_url) as dialogue:
        talk = Talk(dialogue, world.user("new"))
        first = await talk.say("something funny")
        q1 = reply_of(first)
        assert q1.action is DialogueAction.QUESTION and not first.response.items
        assert [(s.kind.value, s.value, s.turn) for s in q1.signals] == [("CATEGORY", "comedy", 1)]
        assert q1.question and len(q1.question.split()) <= 8 and len(q1.options) >= 2
        second = await talk.say(q1.options[0])
        q2 = reply_of(second)
        assert q2.action is DialogueAction.QUESTION
        assert q2.attribute != q1.attribute  # never the same question twice
        assert q2.candidates < q1.candidates  # narrower
        assert {s.turn for s in q2.signals} == {1, 2}
        third = await talk.say(q2.options[0])
        done = reply_of(third)
        assert done.action is DialogueAction.RECOMMEND and done.reason == "enough_signals"
        assert {s.turn for s in done.signals} == {1, 2, 3}
        check_grounded(third.response, {1, 2, 3})
        assert not {i.item_id for i in third.response.items} & world.deleted
        # every turn was read by the LLM, validated, and logged
        for served in (first, second, third):
            (log,) = [r for r in served.logs if r.use_case is LlmUseCase.DIALOGUE]
            assert log.called and log.used and log.decision == "called" and log.prompt_version
        assert llm_server.calls_for("dialogue_turn") == 3
        assert {r.use_case for r in third.logs} >= {LlmUseCase.DIALOGUE, LlmUseCase.RERANK}

        # a redelivered turn changes nothing and gets its first answer again
        again = await dialogue.serve(talk.requests[1], position=Position("tid", 0, 2))
        assert again.response == second.response and again.logs == second.logs
        assert llm_server.calls_for("dialogue_turn") == 3

    # a restart (new engine, new pools) continues from Postgres exactly
    async with talking(world, embedder) as restarted:
        talk.dialogue = restarted
        again = await restarted.serve(talk.requests[2], position=Position("tid", 0, 3))
        assert again.response == third.response
        more = await talk.say("something from the 2010s instead")
        signals = reply_of(more).signals
        assert [s.turn for s in signals if s.kind.value == "ERA"] == [4]  # newer era wins
        assert {s.turn for s in signals} == {1, 3, 4}
    with psycopg.connect(world.dsn) as conn:
        rows = conn.execute(
            "SELECT turn, kafka_topic_id, kafka_offset FROM conversation_turns "
            "WHERE conversation_id = %s ORDER BY turn",
            (talk.conversation_id,),
        ).fetchall()
    assert rows == [(n, "tid", n) for n in range(1, 5)]


async def test_rules_only_and_just_show_me(world: World, embedder: Any) -> None:
    async with talking(world, embedder) as dialogue:  # no LLM: the rules read turns
        talk = Talk(dialogue, world.user("new"))
        first = await talk.say("hi there")
        assert reply_of(first).action is DialogueAction.QUESTION
        (log,) = first.logs
        assert log.use_case is LlmUseCase.DIALOGUE and not log.called
        assert log.fallback_reason == "no_endpoint"
        out = await talk.say("just show me something")
        assert reply_of(out).action is DialogueAction.RECOMMEND
        assert reply_of(out).reason == "just_show_me" and len(out.response.items) == 5
        other = Talk(dialogue, world.user("new"))
        flag = await other.say("", show_now=True)
        assert reply_of(flag).reason == "just_show_me" and flag.response.items


async def test_warm_users_are_asked_less_and_no_question_repeats(
    world: World, embedder: Any
) -> None:
    async with talking(world, embedder, dialogue_max_questions=5) as dialogue:
        warm = await Talk(dialogue, world.user("warm")).say("something funny")
        assert reply_of(warm).action is DialogueAction.RECOMMEND
        assert reply_of(warm).reason == "enough_signals" and warm.response.items
        check_grounded(warm.response, {1})
        talk = Talk(dialogue, world.user("new"))
        asked: list[str] = []
        served = await talk.say("anything really")
        while reply_of(served).action is DialogueAction.QUESTION:
            asked.append(reply_of(served).attribute)
            served = await talk.say("any")  # settles the attribute, states nothing
            assert talk.turn < 10
        assert len(asked) == len(set(asked)) >= 2
        assert reply_of(served).reason in ("turn_limit", "no_informative_question")


async def test_injection_and_pii_turns_behave_like_single_requests(
    world: World, embedder: Any, llm_server: SimulatedLlmServer
) -> None:
    llm_server.set_behaviour("obey_injections")
    attack = next(a for a in ATTACKS if a.where == "query" and a.language == "en")
    text = attack.render("item-00001")
    pii = ["jane.doe@example.com", "+44 20 7946 0958"]
    async with talking(world, embedder, llm_url=llm_server.base_url) as dialogue:
        talk = Talk(dialogue, world.user("new"))
        first = await talk.say("something funny")
        before = llm_server.calls_for("dialogue_turn")
        second = await talk.say(f"{reply_of(first).options[0]}. {text}")
        (log,) = [r for r in second.logs if r.use_case is LlmUseCase.DIALOGUE]
        assert (
            log.injection_flagged and not log.called and log.fallback_reason == "injection_flagged"
        )
        assert llm_server.calls_for("dialogue_turn") == before  # flagged text reaches no LLM
        reply = reply_of(second)
        assert reply.action is DialogueAction.QUESTION  # the answer still counted, no show_now
        assert {s.turn for s in reply.signals} == {1, 2}
        said = f"{reply.options[0]}, mail me at {pii[0]} or call {pii[1]}"
        third = await talk.say(said)
        assert reply_of(third).action is DialogueAction.RECOMMEND and third.response.items
        # turn 3 is flagged exactly when the same text as a query would be (the instruction
        # scorer may read "mail me, call" as an instruction); the rerank read the
        # conversation's summary, which holds the screened turn 2: flagged
        _, as_query, _ = await dialogue.rec.sanitiser.screen_query(said)
        by_case = {r.use_case: r for r in third.logs}
        assert by_case[LlmUseCase.DIALOGUE].injection_flagged == as_query
        assert by_case[LlmUseCase.RERANK].injection_flagged
        for request in llm_server.requests:
            assert text not in request.prompt_text()
            for secret in pii:
                assert secret not in request.prompt_text()
    with psycopg.connect(world.dsn) as conn:
        stored = " ".join(
            r[0]
            for r in conn.execute(
                "SELECT turn_record::text || response::text || llm_logs::text "
                "FROM conversation_turns WHERE conversation_id = %s",
                (talk.conversation_id,),
            ).fetchall()
        )
    assert text not in stored and "[EMAIL]" in stored
    for secret in pii:
        assert secret not in stored


async def test_conversation_over_the_broker(
    world: World, embedder: Any, broker: EmbeddedBroker
) -> None:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        route_epsilon=0.0,
    )
    admin.ensure_topics(settings)
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("serve", ctx, stop))
    conversation = f"c-{uuid.uuid4().hex[:8]}"
    try:
        await await_until(
            lambda: ctx.handles.get(ServeWorker) is not None, 120, what="serve worker start"
        )
        with RecClient(settings) as client:

            async def say(turn: int, text: str) -> RecResponse:
                return await client.arequest(
                    world.user("new"),
                    k=5,
                    timeout_s=60,
                    deadline_ms=10_000,
                    conversation=ConversationTurn(
                        conversation_id=conversation, turn=turn, text=text
                    ),
                )

            first = await say(1, "something funny")
            second = await say(2, reply_of(first).options[0])
            third = await say(3, reply_of(second).options[0])
        assert [reply_of(r).action for r in (first, second, third)] == [
            DialogueAction.QUESTION,
            DialogueAction.QUESTION,
            DialogueAction.RECOMMEND,
        ]
        check_grounded(third, {1, 2, 3})
        pool = db.async_pool(world.dsn, min_size=1, max_size=1, name="check")
        await pool.open(wait=True)
        try:
            rows = await PgConversations(pool).load(world.user("new"), conversation)
        finally:
            await pool.close()
        await asyncio.to_thread(_dashboard_conversation, settings, world)
        # each turn names the incarnation of rec.requests it was read from
        topic_id = await asyncio.to_thread(
            admin.topic_ids, settings, [ctx.topics.rec_requests.name]
        )
        assert [r.turn.turn for r in rows] == [1, 2, 3]
        assert {r.position.topic_id for r in rows if r.position} == {
            topic_id[ctx.topics.rec_requests.name]
        }
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


def _drive_chat(settings: Any, dsn: str, user_id: str) -> list[str]:
    """One full conversation through `streamrec chat` in a pseudo-terminal (pexpect)."""
    import os
    import sys
    from pathlib import Path

    import pexpect

    from recsys.dialogue.attributes import QUESTIONS

    env = {
        **os.environ,
        "NO_COLOR": "1",
        "TERM": "dumb",
        "COLUMNS": "200",
        "STREAMREC_TOPIC_PREFIX": settings.topic_prefix,
        "STREAMREC_HOME": str(settings.home),
    }
    exe = str(Path(sys.executable).with_name("streamrec"))
    child = pexpect.spawn(
        exe,
        ["chat", user_id, "--broker", settings.kafka_bootstrap, "--database", dsn, "--details"],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    screens: list[str] = []
    questions = "|".join(map(re.escape, QUESTIONS.values()))
    try:
        child.expect("What would you like to watch\\?")
        child.expect("you> ")
        child.sendline("something funny")
        child.expect(f"streamrec> ({questions})")
        child.expect("you> ")
        screens.append(child.before)
        child.sendline("1")
        child.expect(f"streamrec> ({questions})")
        child.expect("you> ")
        screens.append(child.before)
        child.sendline("1")
        child.expect("Here is what I would pick:")
        child.expect("you> ")
        screens.append(child.before)
        child.sendline("/why")
        child.expect("you> ")
        screens.append(child.before)
        child.sendline("/quit")
        child.expect("bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before
    return screens


async def test_streamrec_chat_in_a_terminal(
    world: World, embedder: Any, broker: EmbeddedBroker
) -> None:
    settings = world.settings.with_overrides(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        route_epsilon=0.0,
    )
    admin.ensure_topics(settings)
    ctx = bootstrap(settings, Overrides(embedder=embedder))
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("serve", ctx, stop))
    try:
        await await_until(
            lambda: ctx.handles.get(ServeWorker) is not None, 120, what="serve worker start"
        )
        screens = await asyncio.to_thread(_drive_chat, settings, world.dsn, world.user("new"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    first, second, recs, why = screens
    assert "1. " in first and "2. " in first and "(or /show)" in first
    assert "comedy (turn 1)" in first and "candidates" in first
    assert "(turn 2)" in second and "llm-log DIALOGUE" in second
    # the recommendations, each with its reason citing what was said
    assert recs.count("Matches what you told me: comedy") >= 1
    assert "(turn 3)" in recs and "route " in recs and "warmth COLD" in recs
    assert "llm-log DIALOGUE: not called (no_endpoint)" in why
    assert "llm-log RERANK" in why


def _dashboard_conversation(settings: Any, world: World) -> None:
    """The dashboard's try-it panel holds the same conversation, form post by form post."""
    import html
    import urllib.error
    import urllib.parse
    import urllib.request

    from dashboard.server import Dashboard
    from stack.embedded import free_port

    board = Dashboard(settings, port=free_port()).start()
    base = f"http://127.0.0.1:{board.port}"

    def post(fields: dict[str, str], csrf: bool = True) -> tuple[int, str]:
        data = fields | ({"csrf": board.access.csrf_token} if csrf else {})
        request = urllib.request.Request(
            base + "/try/chat",
            data=urllib.parse.urlencode(data).encode(),
            headers={"Origin": base, "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    try:
        user = world.user("new")
        assert post({"user_id": user, "text": "funny"}, csrf=False)[0] == 403
        status, page = post({"user_id": user, "text": "something funny <b>now</b>"})
        assert status == 200
        conversation = re.search(r'name="conversation_id" value="([^"]+)"', page)
        assert conversation is not None
        assert "&lt;b&gt;now&lt;/b&gt;" in page and "<b>now</b>" not in page  # escaped
        assert 'class="bot question"' in page and "comedy (turn 1)" in page
        assert 'name="turn" value="2"' in page
        fields = {"user_id": user, "conversation_id": conversation.group(1)}
        status, page = post(fields | {"text": "1"})
        assert status == 200 and 'data-turn="2"' in page
        status, page = post(fields | {"text": "", "show_now": "1"})
        assert status == 200 and "(just show me)" in page
        assert "just_show_me" in page and 'class="chat-items"' in page
        assert html.escape("Matches what you told me: comedy") in page
        assert 'data-use-case="DIALOGUE"' in page
    finally:
        board.stop()
