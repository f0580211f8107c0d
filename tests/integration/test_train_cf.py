"""Batch CF on the real embedded Postgres: `streamrec train-cf` (as a user runs it) writes
and activates ALS versions; `PgAls.recommend` folds users in and searches pgvector;
`PgPopularity` serves the decayed snapshot."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from recsys import db
from recsys.cf.als_store import PgAls
from recsys.cf.popularity import DecayedPopularity, PgPopularity

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)
FLAGS = ("--factors", "16", "--iterations", "12", "--regularization", "0.1", "--alpha", "5")


def streamrec(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=clean | env,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def taste_events(seed: int = 5, users: int = 60, start: int = 0) -> list[tuple]:
    """Users u0.. alternate between liking a-items and b-items (40 of each)."""
    rng = random.Random(seed)
    rows = []
    for u in range(start, start + users):
        group = "a" if u % 2 == 0 else "b"
        for k, i in enumerate(rng.sample(range(40), 12)):
            kind = "RATING" if k % 3 == 0 else "CLICK"
            rating = 4.5 if kind == "RATING" else None
            at = NOW - timedelta(hours=rng.randrange(1, 500))
            rows.append((f"e-{seed}-{u}-{i}", f"u{u}", f"{group}{i}", kind, rating, at))
    return rows


def insert(dsn: str, rows: list[tuple]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO user_events (event_id, user_id, item_id, event_type, rating, "
            "occurred_at, positive, weight) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(*r, r[3] != "RATING" or r[4] >= 4, 2.0 if r[3] == "CLICK" else 1.5) for r in rows],
        )


def home(tmp_path: Path) -> dict[str, str]:
    return {"STREAMREC_HOME": str(tmp_path / "home")}


async def open_pool(dsn: str):
    pool = db.async_pool(dsn, max_size=2)
    await pool.open(wait=True)
    return pool


def rows_of(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


async def test_train_cf_writes_and_activates_a_version_that_serves_the_users_taste(
    database: str, tmp_path: Path
) -> None:
    insert(database, taste_events())
    out = ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
    assert "ALS version als-" in out and "(active)" in out
    [(version, active, n_items, n_users, source, params, metrics)] = rows_of(
        database,
        "SELECT version, active, n_items, n_users, source, params, metrics FROM als_models",
    )
    assert active and n_users == 60 and n_items == 80 and source == "postgres"
    assert params["factors"] == 16 and params["alpha"] == 5.0 and params["weights"]["cap"] > 0
    assert metrics["loss"] > 0 and set(metrics["seconds"]) >= {"load", "train"}
    assert rows_of(database, "SELECT count(*), min(dims) FROM als_item_factors") == [(80, 16)]

    pool = await open_pool(database)
    try:
        store = PgAls(pool, cache_s=0)
        assert await store.active_version() == version
        recent = [("a1", 2.0), ("a2", 2.0), ("a3", 1.5)]
        recs = await store.recommend(recent, 10, exclude=["a4", "a5"])
        ids = [i for i, _ in recs]
        assert len(ids) == 10 and len(set(ids)) == 10
        assert sum(i.startswith("a") for i in ids) >= 7, ids  # of the same taste, mostly
        assert not {"a1", "a2", "a3", "a4", "a5"} & set(ids)
        # what the model itself ranks highest for the same fold-in (exact, in numpy)
        model = await store.load(version)
        exact = [i for i, _ in model.recommend(recent, 10, exclude=["a4", "a5"])]
        assert len(set(ids) & set(exact)) >= 9, (ids, exact)
        scores = [s for _, s in recs]
        assert scores == sorted(scores, reverse=True)
        # unknown items fold in to nothing; unknown next to known are ignored
        assert await store.recommend([("nope", 1.0)], 5) == []
        assert await store.recommend([("nope", 1.0), ("b1", 2.0)], 5)
        assert await store.recommend(recent, 0) == []
        # all but four items are recent or excluded: only those four can come back
        everything = [f"{g}{i}" for g in "ab" for i in range(40)]
        rest = await store.recommend(recent, 10, exclude=everything[5:-2])
        assert {i for i, _ in rest} == {"a0", "a4", "b38", "b39"}
    finally:
        await pool.close()


def test_the_search_uses_the_inner_product_index(database: str, tmp_path: Path) -> None:
    insert(database, taste_events())
    ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
    [(version,)] = rows_of(database, "SELECT version FROM als_models WHERE active")
    vector = "[" + ",".join(["0.1"] * 16) + "]"
    with psycopg.connect(database) as conn:
        # 80 rows: the planner would rather sort; take the alternatives away to show that
        # the partial expression index matches the query PgAls sends
        for knob in ("seqscan", "bitmapscan", "sort"):
            conn.execute(f"SET enable_{knob} = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT item_id FROM als_item_factors WHERE dims = 16 AND version = %s "
                f"ORDER BY factor::vector(16) <#> '{vector}'::vector(16) LIMIT 10",
                (version,),
            )
        )
    assert "als_item_factors_ip_16" in plan, plan


async def test_retraining_activates_a_new_version_and_serving_follows_after_the_cache(
    database: str, tmp_path: Path
) -> None:
    insert(database, taste_events())
    ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
    pool = await open_pool(database)
    try:
        cached = PgAls(pool, cache_s=3600)
        first = await cached.active_version()
        insert(database, taste_events(seed=6, users=20, start=60))
        out = ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
        versions = rows_of(
            database, "SELECT version, active, n_users FROM als_models ORDER BY trained_at"
        )
        assert [(v == first, a, n) for v, a, n in versions] == [
            (True, False, 60),
            (False, True, 80),
        ]
        second = versions[1][0]
        assert second in out
        assert await cached.active_version() == first  # still cached
        assert await PgAls(pool, cache_s=0).active_version() == second
        # the new users' items are served from the new version
        assert await PgAls(pool, cache_s=0).recommend([("a1", 1.0), ("a2", 1.0)], 5)
        # old versions beyond STREAMREC_ALS_KEEP_VERSIONS are pruned (the active one stays)
        ok(
            streamrec(
                "train-cf",
                "--database",
                database,
                *FLAGS,
                "--seed",
                "9",
                STREAMREC_ALS_KEEP_VERSIONS="1",
                **home(tmp_path),
            )
        )
        left = rows_of(database, "SELECT version, active FROM als_models")
        assert len(left) == 1 and left[0][1] and left[0][0] not in (first, second)
        assert rows_of(database, "SELECT count(DISTINCT version) FROM als_item_factors") == [(1,)]
    finally:
        await pool.close()


def test_since_until_window_and_no_activate(database: str, tmp_path: Path) -> None:
    rows = taste_events()
    insert(database, rows)
    cut = NOW - timedelta(hours=250)
    expected = sum(1 for r in rows if r[5] >= cut)
    out = ok(
        streamrec(
            "train-cf",
            "--database",
            database,
            *FLAGS,
            "--since",
            cut.isoformat(),
            "--no-activate",
            **home(tmp_path),
        )
    )
    assert "inactive" in out
    [(active, n_events, since)] = rows_of(
        database, "SELECT active, n_events, window_since FROM als_models"
    )
    assert not active and n_events == expected and since == cut
    assert rows_of(database, "SELECT count(*) FROM als_models WHERE active") == [(0,)]


def test_train_cf_from_the_archive(database: str, tmp_path: Path) -> None:
    from recsys.archive import ArchivedMessage, ArchiveWriter
    from recsys.records import UserEvent
    from streams.serde import AvroSerde
    from streams.settings import Settings
    from streams.topics import Topics

    prefix = "arch."
    topic = Topics(Settings(topic_prefix=prefix)).user_events.name
    schema = AvroSerde().codec(UserEvent).schema
    writer = ArchiveWriter(tmp_path / "archive", roll_bytes=1 << 20, roll_s=3600.0)
    writer.register(topic, schema)
    rows = taste_events(users=20)
    for offset, (event_id, user, item, kind, rating, at) in enumerate([*rows, rows[0]]):
        event = UserEvent(
            event_id=event_id,
            user_id=user,
            event_type=kind,
            item_id=item,
            rating=rating,
            occurred_at=at,
        )
        writer.write(
            ArchivedMessage(
                topic=topic,
                partition=0,
                offset=offset,
                timestamp_ms=int(at.timestamp() * 1000),
                key=user,
                headers=[],
                schema_id=1,
                value=event.model_dump(mode="python"),
                value_schema=schema,
            )
        )
    writer.close()
    out = ok(
        streamrec(
            "train-cf",
            "--database",
            database,
            *FLAGS,
            "--archive",
            str(tmp_path / "archive"),
            STREAMREC_TOPIC_PREFIX=prefix,
            **home(tmp_path),
        )
    )
    assert "from archive:" in out
    [(n_events, n_users, source)] = rows_of(
        database, "SELECT n_events, n_users, source FROM als_models WHERE active"
    )
    assert n_events == len(rows) and n_users == 20 and source.startswith("archive:")


def test_clear_errors(database: str, tmp_path: Path) -> None:
    failed(
        streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)),
        "no user events to train on",
    )
    failed(
        streamrec(
            "train-cf",
            "--database",
            f"postgresql://postgres@/x?host={tmp_path}&port=1",
            **home(tmp_path),
        ),
        "cannot connect",
    )
    failed(
        streamrec("train-cf", "--database", database, "--factors", "20", **home(tmp_path)),
        "factors must be one of 16, 32, 64, 128, 256",
    )
    failed(
        streamrec("train-cf", "--database", database, "--alpha", "0", **home(tmp_path)),
        "alpha > 0",
    )
    failed(
        streamrec(
            "train-cf",
            "--database",
            database,
            "--since",
            "2026-02-01",
            "--until",
            "2026-01-01",
            **home(tmp_path),
        ),
        "--since must be before --until",
    )
    failed(
        streamrec(
            "train-cf",
            "--database",
            database,
            "--archive",
            str(tmp_path / "none"),
            **home(tmp_path),
        ),
        "no such folder",
    )
    (tmp_path / "empty-archive").mkdir()
    failed(
        streamrec(
            "train-cf",
            "--database",
            database,
            "--archive",
            str(tmp_path / "empty-archive"),
            **home(tmp_path),
        ),
        "no archived user events",
    )
    assert rows_of(database, "SELECT count(*) FROM als_models") == [(0,)]


async def test_popularity_snapshot_matches_the_offline_model(database: str) -> None:
    rows = taste_events()
    insert(database, rows)
    # a fresh burst on one item and an old pile on another
    burst = [
        (f"burst-{n}", f"x{n}", "b7", "CLICK", None, NOW - timedelta(hours=1)) for n in range(5)
    ]
    pile = [
        (f"pile-{n}", f"y{n}", "a9", "CLICK", None, NOW - timedelta(days=60)) for n in range(40)
    ]
    insert(database, burst + pile)
    offline = DecayedPopularity(168 * 3600.0)
    for _, _, item, kind, _rating, at in rows + burst + pile:
        offline.update(item, at.timestamp(), 2.0 if kind == "CLICK" else 1.5)
    pool = await open_pool(database)
    try:
        popularity = PgPopularity(pool, half_life_h=168.0, max_age_s=3600)
        top = await popularity.top(10)  # first call builds the snapshot
        expected = offline.top(10, at=NOW.timestamp())
        assert [i for i, _ in top][:3] == [i for i, _ in expected][:3]
        for (item, score), (item2, score2) in zip(top, expected, strict=True):
            assert item == item2 and score == pytest.approx(score2, rel=1e-3)
        assert top[0][0] == "b7"  # the fresh burst beats the pile of 60-day-old clicks
        assert "a9" not in [i for i, _ in top[:5]]
        excluded = await popularity.top(3, exclude=["b7"])
        assert "b7" not in [i for i, _ in excluded] and len(excluded) == 3
        # new events show only after a refresh (the snapshot is what requests read)
        insert(database, [(f"late-{n}", f"z{n}", "a0", "PURCHASE", None, NOW) for n in range(30)])
        assert (await popularity.top(1))[0][0] == "b7"
        assert await popularity.refresh() > 0
        assert (await popularity.top(1))[0][0] == "a0"
        await popularity.close()
        # a stale snapshot is still served, and refreshed behind the request
        insert(database, [(f"later-{n}", f"w{n}", "b3", "PURCHASE", None, NOW) for n in range(60)])
        stale = PgPopularity(pool, half_life_h=168.0, max_age_s=1e-6)
        assert len(await stale.top(5)) == 5
        await stale.close()  # waits for the background refresh
        assert rows_of(
            database, "SELECT item_id FROM cf_popularity ORDER BY score DESC LIMIT 1"
        ) == [("b3",)]
    finally:
        await pool.close()


async def test_serving_store_answers_as_the_plain_one_with_cached_factors(
    database: str, tmp_path: Path
) -> None:
    """The serve worker's PgAls (item factors cached per version, the search on the pool's
    own ef_search without settings of its own) answers exactly what the plain one does,
    first from Postgres, then from its cache, and follows a new version."""
    insert(database, taste_events())
    ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
    plain_pool = await open_pool(database)
    pool = db.async_pool(database, autocommit=True, ef_search=100)
    await pool.open(wait=True)
    try:
        plain = PgAls(plain_pool, cache_s=0)
        serving = PgAls(pool, cache_s=0, factor_cache=1000, session_ef_search=100)
        cases = [
            ([("a1", 2.0), ("a2", 2.0), ("a3", 1.5)], ["a4", "a5"]),
            ([("b1", 1.0), ("a2", 3.0), ("nope", 1.0)], []),
            ([("b7", 2.0)], [f"b{i}" for i in range(20)]),
        ]
        for _ in range(2):  # the second round reads every factor from the cache
            for recent, exclude in cases:
                assert await serving.recommend(recent, 10, exclude) == await plain.recommend(
                    recent, 10, exclude
                )
        first = await plain.active_version()
        assert first is not None
        assert set(serving.cached_factors) == {first}
        # a bound smaller than what was read: the newest stay, the answers do not change
        small = PgAls(pool, cache_s=0, factor_cache=2, session_ef_search=100)
        for recent, exclude in cases:
            assert await small.recommend(recent, 10, exclude) == await plain.recommend(
                recent, 10, exclude
            )
        assert sum(small.cached_factors.values()) <= 2
        # a new version: factors are read for it, never taken from the old one's
        insert(database, taste_events(seed=6, users=20, start=60))
        ok(streamrec("train-cf", "--database", database, *FLAGS, **home(tmp_path)))
        second = await plain.active_version()
        assert second != first
        for recent, exclude in cases:
            assert await serving.recommend(recent, 10, exclude) == await plain.recommend(
                recent, 10, exclude
            )
        assert second in serving.cached_factors
    finally:
        await pool.close()
        await plain_pool.close()
