"""The policy-learning loop on the embedded stack, against a world with known truth.

A simulated world (testkit.policy_world) is seeded into Postgres; a logging policy that
explores is activated; the real ``serve`` worker (with the simulated LLM) answers
requests of the world's users, whose clicks follow their hidden preferences; the real
``feedback`` worker joins them into ``feedback.examples``; ``learn-policy`` reads those
from Kafka, estimates, and activates a better policy, which the running serve worker
picks up without a restart. Checked on the way: the logged propensity of every response
is the logging policy's exact probability of the action it took, and the actions'
empirical frequencies match it; every response and LLM-log record carries the version.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from jobs.learn_policy import LearnPolicyOptions, run_learn_policy
from recsys import db
from recsys.llm.client import LlmClient
from recsys.policy.logged import logged_action, logged_context
from recsys.policy.model import BUCKETS, Action, Context, Policy
from recsys.policy.store import PgPolicies
from recsys.records import EventType, LlmInvolvement, LlmUseCase, RecResponse, UserEvent, utcnow
from recsys.serving.default_policy import default_policy
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from testkit.llm_server import SimulatedLlmServer
from testkit.policy_seed import seed_policy_world
from testkit.policy_world import PolicyWorld, design_config
from tests.conftest import make_settings
from tests.helpers import await_until, read_topic
from workers.bootstrap import Overrides, bootstrap
from workers.feedback_worker import FeedbackWorker
from workers.runtime import serve_forever
from workers.serve_worker import ServeWorker

pytestmark = pytest.mark.integration

REQUESTS = 1200
K = 5
LOGGING_EPSILON = 0.8
LEARNED_EPSILON = 0.05


async def _drive(
    settings: Settings, world: PolicyWorld, n: int, rng: random.Random
) -> list[tuple[RecResponse, bool]]:
    """``n`` requests of the world's users; each user clicks the top item with their
    hidden probability for the action the response took."""
    users = world.by_id()
    out: list[tuple[RecResponse, bool]] = []
    limit = asyncio.Semaphore(24)
    with RecClient(settings) as client, RecordProducer(settings) as producer:

        async def one() -> None:
            user, has_query = world.draw(rng)
            query = world.query_text(rng) if has_query else None
            async with limit:
                response = await client.arequest(
                    user.user_id, query=query, k=K, deadline_ms=10_000, timeout_s=60
                )
            action = logged_action(response)
            # the LLM's reordering is the treatment (a prompt version says it was applied)
            reranked = response.prompt_version is not None
            treated = Action(action.route, reranked, action.fusion)
            clicked = rng.random() < world.mean_reward(users[user.user_id], has_query, treated)
            if clicked:
                producer.publish_user_event(
                    UserEvent(
                        user_id=user.user_id,
                        event_type=EventType.CLICK,
                        item_id=response.items[0].item_id,
                        rec_request_id=response.request_id,
                        occurred_at=utcnow(),
                    )
                )
            out.append((response, clicked))

        await asyncio.gather(*(one() for _ in range(n)))
    return out


def _check_propensities(logging: Policy, served: list[RecResponse]) -> None:
    """Logged propensity = the policy's exact probability; frequencies agree with it."""
    by_context: dict[Context, Counter[Action]] = defaultdict(Counter)
    for r in served:
        ctx, action = logged_context(r), logged_action(r)
        assert r.policy_version == logging.version
        assert r.propensity == pytest.approx(logging.probability(ctx, action), abs=1e-12)
        by_context[ctx][action] += 1
    checked = 0
    for ctx, counts in by_context.items():
        n = sum(counts.values())
        if n < 100:
            continue
        for action, p in logging.probabilities(ctx).items():
            sd = (p * (1 - p) / n) ** 0.5
            assert abs(counts[action] / n - p) <= 4.5 * sd + 0.01, (ctx, action, counts, n)
            checked += 1
    assert checked >= 16  # at least two contexts with every one of their actions


async def test_learn_policy_closes_the_loop(
    tmp_path: Path, broker: EmbeddedBroker, database: str, embedder: Any
) -> None:
    world = PolicyWorld(seed=12, users_per_bucket=10, new_users=6, scale=2.0)
    settings = make_settings(
        tmp_path,
        bootstrap_servers=broker.bootstrap,
        database_url=database,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        route_epsilon=LEARNED_EPSILON,  # the learned policy's exploration
        policy_refresh_s=0.5,
        attribution_window_s=1,
        feedback_allowed_lateness_s=0,
        feedback_sweep_s=0.2,
        llm_budget_tokens_per_min=100_000_000,
        serve_concurrency=24,
    )
    await seed_policy_world(settings, embedder, world)
    admin.ensure_topics(settings)
    logging = default_policy(design_config(LOGGING_EPSILON))
    pool = db.async_pool(database, min_size=1, max_size=2, name="loop-test")
    await pool.open(wait=True)
    store = PgPolicies(pool)
    logging = await store.write(logging, source="manual")
    await store.activate(logging.version)

    with SimulatedLlmServer() as llm:
        client = LlmClient(base_url=llm.base_url, model="simulated-test", max_retries=0)
        ctx = bootstrap(settings, Overrides(embedder=embedder, llm_client=client))
        fb_ctx = bootstrap(settings)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(serve_forever("serve", ctx, stop)),
            asyncio.create_task(serve_forever("feedback", fb_ctx, stop)),
        ]
        try:
            serve = await await_until(
                lambda: ctx.handles.get(ServeWorker), 120, what="serve worker start"
            )
            assert serve.policies.current.version == logging.version
            feedback = await await_until(
                lambda: fb_ctx.handles.get(FeedbackWorker), 60, what="feedback worker start"
            )
            served = await _drive(settings, world, REQUESTS, random.Random(5))
            responses = [r for r, _ in served]
            shown = sum(len(r.items) for r in responses)
            await await_until(
                lambda: feedback.joiner.emitted >= shown, 60, what="every impression joined"
            )
            _check_propensities(logging, responses)
            queries = sum(r.has_query for r in responses)
            logs = [
                AvroSerde().decode(m.value(), LlmInvolvement)
                for m in read_topic(settings, ctx.topics.llm_log.name, REQUESTS + queries, 60)
            ]
            assert len(logs) == REQUESTS + queries  # rerank + intent decisions
            assert {r.policy_version for r in logs} == {logging.version}
            by_id = {r.request_id: r for r in responses}
            assert all(rec.propensity == by_id[rec.request_id].propensity for rec in logs)
            # the LLM reranked when the policy decided so (honest server, ample budget),
            # except where the injection guard flagged a synthetic text and skipped the call
            skipped = {
                rec.request_id
                for rec in logs
                if rec.use_case is LlmUseCase.RERANK and rec.decision == "injection_flagged"
            }
            for r in responses:
                if r.rerank != (r.prompt_version is not None):
                    assert r.rerank and r.request_id in skipped, r
            assert len(skipped) <= 0.1 * len(responses)
            assert any(r.rerank for r in responses) and any(r.explored for r in responses)

            # a dry run reports and changes nothing
            dry = await run_learn_policy(
                settings, LearnPolicyOptions(resamples=300, dry_run=True), database
            )
            assert dry["activated"] is None and dry["n_requests"] == REQUESTS
            assert await store.active_version() == logging.version

            report = await run_learn_policy(
                settings,
                LearnPolicyOptions(
                    resamples=300, json_out=tmp_path / "r.json", html=tmp_path / "r.html"
                ),
                database,
            )
            assert report["deploy"] and report["activated"], report["reason"]
            learned = await store.load(report["activated"])
            assert await store.active_version() == learned.version
            truth_logging = world.true_value(logging)
            truth_learned = world.true_value(learned)
            rules_only = world.true_value(
                logging.with_epsilon({b: LEARNED_EPSILON for b in BUCKETS})
            )
            assert truth_learned >= truth_logging + 0.1, (truth_logging, truth_learned)
            assert truth_learned > rules_only, (rules_only, truth_learned)
            assert json.loads((tmp_path / "r.json").read_text())["activated"] == learned.version
            assert "data:image/png;base64," in (tmp_path / "r.html").read_text()

            # the running serve worker switches within policy_refresh_s, no restart
            await await_until(
                lambda: serve.policies.current.version == learned.version,
                10,
                what="serve worker on the new policy",
            )
            with RecClient(settings) as rc:
                after = await rc.arequest(
                    world.users[0].user_id, k=K, timeout_s=30, deadline_ms=30_000
                )
            assert after.policy_version == learned.version
            assert after.propensity == pytest.approx(
                learned.probability(logged_context(after), logged_action(after))
            )
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            await client.aclose()
            await pool.close()
