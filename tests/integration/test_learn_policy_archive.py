"""`learn-policy` over the Avro archive and a time range, against the real Postgres:
only the range is read, a well-supported better policy is activated, logs without
exploration leave everything as it was and say what could not be estimated."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.learn_policy import LearnPolicyOptions, run_learn_policy
from recsys import db
from recsys.archive import ArchivedMessage, ArchiveWriter
from recsys.policy.logged import LoggedRequest
from recsys.policy.model import Policy
from recsys.policy.store import PgPolicies
from recsys.records import FeedbackExample
from recsys.serving.default_policy import default_policy
from streams.producer import registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from testkit.policy_world import PolicyWorld, design_config
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def _example(req: LoggedRequest, at: datetime) -> FeedbackExample:
    fusion = req.action.fusion
    return FeedbackExample(
        example_id=f"{req.request_id}:item-1",
        request_id=req.request_id,
        user_id="u",
        item_id="item-1",
        rank=1,
        route=req.action.route.value,
        warmth_bucket=req.context.bucket.value,
        llm_used=req.action.rerank,
        propensity=req.propensity,
        clicked=req.reward > 0,
        impression_at=at,
        policy_version=req.policy_version,
        has_query=req.context.has_query,
        has_history=req.context.has_history,
        rerank_available=req.context.rerank_available,
        rerank=req.action.rerank,
        content_weight=fusion.content_weight if fusion else None,
        popularity_weight=fusion.popularity_weight if fusion else None,
    )


def _archive(settings: Settings, log: list[LoggedRequest]) -> None:
    spec = Topics(settings).feedback_examples
    serde = AvroSerde(registry_from_settings(settings))
    schema = serde.codec(FeedbackExample).schema
    writer = ArchiveWriter(settings.archive_root, roll_bytes=1 << 26, roll_s=float("inf"))
    writer.register(spec.name, schema)
    for offset, req in enumerate(log):
        at = T0 + timedelta(seconds=offset)
        writer.write(
            ArchivedMessage(
                topic=spec.name,
                partition=0,
                offset=offset,
                timestamp_ms=int(at.timestamp() * 1000),
                key="u",
                headers=[],
                schema_id=serde.registry.id_for(spec.subject, schema),
                value=_example(req, at).model_dump(mode="python"),
                value_schema=schema,
            )
        )
    writer.close()


async def _active(dsn: str) -> str | None:
    pool = db.async_pool(dsn, min_size=1, max_size=1, name="archive-test")
    await pool.open(wait=True)
    try:
        return await PgPolicies(pool).active_version()
    finally:
        await pool.close()


async def _activate(dsn: str, policy: Policy) -> str:
    pool = db.async_pool(dsn, min_size=1, max_size=1, name="archive-test")
    await pool.open(wait=True)
    try:
        store = PgPolicies(pool)
        stored = await store.write(policy, source="the world's design rule")
        await store.activate(stored.version)
        return stored.version
    finally:
        await pool.close()


def test_learn_policy_from_the_archive(tmp_path: Path, database: str) -> None:
    world = PolicyWorld(seed=8, scale=2.0)
    # the current policy is the rule the world was shaped against (the shipped routes
    # are MovieLens's, not this world's)
    current = asyncio.run(_activate(database, default_policy(design_config(0.05))))

    # logs without exploration: nothing can be judged but the rules they followed
    settings0 = make_settings(tmp_path / "a", database_url=database, route_epsilon=0.05)
    _archive(settings0, world.simulate(default_policy(design_config(0.0)), 1500, 9))
    kept = asyncio.run(
        run_learn_policy(settings0, LearnPolicyOptions(source="archive", resamples=200), database)
    )
    assert kept["current_source"] == "postgres"
    assert not kept["deploy"] and kept["activated"] is None
    assert kept["reason"].startswith("kept the current policy: its rules are the best")
    assert any("ε = 0" in line for line in kept["unsupported"])
    assert asyncio.run(_active(database)) == current

    # exploring logs, half of them by time: a better policy is activated
    settings = make_settings(tmp_path / "b", database_url=database, route_epsilon=0.05)
    logging = default_policy(design_config(0.6))
    _archive(settings, world.simulate(logging, 5000, seed=8))
    half = int((T0 + timedelta(seconds=3000)).timestamp() * 1000)
    report = asyncio.run(
        run_learn_policy(
            settings,
            LearnPolicyOptions(source="archive", until_ms=half, resamples=200),
            database,
        )
    )
    assert report["n_requests"] == 3000 and report["examples"] == 3000
    assert report["logged_by"] == {logging.version: 3000}
    assert report["deploy"] and report["activated"], report["reason"]
    assert asyncio.run(_active(database)) == report["activated"]
