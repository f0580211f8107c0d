"""Policy versions in the real Postgres: written inactive, activated atomically (one
active row, concurrent activations included), followed by a serving process without a
restart."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from recsys import db
from recsys.exceptions import ConfigurationError
from recsys.policy.model import Cell, Fusion, Rule
from recsys.policy.store import PgPolicies, PolicyFollower, read_policies
from recsys.records import Route, WarmthBucket
from recsys.serving.config import ServingConfig
from recsys.serving.default_policy import default_policy

pytestmark = pytest.mark.integration


async def test_versions_activation_and_following(database: str) -> None:
    pool = db.async_pool(database, min_size=1, max_size=4, name="policy-test")
    await pool.open(wait=True)
    try:
        store = PgPolicies(pool)
        settings_policy = default_policy(ServingConfig(epsilon=0.05))
        assert await store.active() is None
        applied = []
        follower = PolicyFollower(store, settings_policy, applied.append, refresh_s=0.05)
        assert (await follower.refresh()).version == settings_policy.version
        assert applied == [] and follower.switches == 0

        warm_cf = settings_policy.with_rules(
            {Cell(WarmthBucket.WARM, False): Rule(Route.CF, False, Fusion(1, 0.5))}
        )
        a = await store.write(settings_policy, source="manual")
        b = await store.write(warm_cf, source="manual", parent_version=a.version)
        assert a.version != b.version and a.version.startswith("policy-")
        assert (await store.load(b.version)).definition() == warm_cf.definition()
        assert await store.active() is None  # written inactive

        await store.activate(a.version)
        # concurrent activations: exactly one active row afterwards, never two
        await asyncio.gather(*(store.activate(v) for v in [a.version, b.version] * 5))
        with psycopg.connect(database) as conn:
            rows = conn.execute("SELECT version FROM serving_policies WHERE active").fetchall()
        assert len(rows) == 1
        await store.activate(b.version)
        assert await store.active_version() == b.version
        with pytest.raises(ConfigurationError, match="no policy version"):
            await store.activate("policy-nope")

        stop = asyncio.Event()
        task = asyncio.create_task(follower.run(stop))
        deadline = asyncio.get_running_loop().time() + 5
        while follower.current.version != b.version:
            assert asyncio.get_running_loop().time() < deadline, "follower never switched"
            await asyncio.sleep(0.02)
        assert applied[-1].version == b.version
        assert applied[-1].rules[Cell(WarmthBucket.WARM, False)].route is Route.CF
        await store.activate(a.version)
        checks = follower.checks
        while follower.current.version != a.version:
            assert asyncio.get_running_loop().time() < deadline + 5
            await asyncio.sleep(0.02)
        assert follower.checks > checks and follower.switches == 2
        stop.set()
        await asyncio.wait_for(task, 5)
        listed = await store.versions()
        assert [v["version"] for v in listed if v["active"]] == [a.version]
        # the loop-free reader `evaluate` uses
        active, named = read_policies(database, [b.version])
        assert active is not None and active.version == a.version
        assert named[b.version].definition() == warm_cf.definition()
        with pytest.raises(ConfigurationError, match="no policy version"):
            read_policies(database, ["policy-nope"])
    finally:
        await pool.close()
