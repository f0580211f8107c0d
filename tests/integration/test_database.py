"""Migrations against the real embedded Postgres."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from recsys import db
from recsys.exceptions import DatabaseUnavailable, MigrationError
from stack.embedded import EmbeddedPostgres


@pytest.fixture
def empty_db(postgres: EmbeddedPostgres) -> str:
    import uuid

    name = f"m_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres.dsn(name)


def test_migrations_apply_once_and_are_recorded(empty_db: str) -> None:
    first = db.apply_migrations(empty_db)
    assert [m.version for m in first] == [m.version for m in db.discover_migrations()]
    assert db.apply_migrations(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
        assert [r[0] for r in rows] == [m.version for m in first]
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname='vector'"
        ).fetchone()
        assert version is not None and version[0].startswith("0.8.")


def test_an_edited_applied_migration_is_refused(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (v int);")
    db.apply_migrations(empty_db, tmp_path)
    (tmp_path / "0001_one.sql").write_text("CREATE TABLE one (v bigint);")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        db.apply_migrations(empty_db, tmp_path)


def test_a_failing_migration_rolls_back_and_says_which(empty_db: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (v int);")
    (tmp_path / "0002_broken.sql").write_text(
        "CREATE TABLE half (v int); SELECT no_such_function();"
    )
    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed"):
        db.apply_migrations(empty_db, tmp_path)
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect to Postgres"):
        db.wait_for_database(f"postgresql://postgres@/x?host={tmp_path}&port=1", timeout_s=1)


def test_pool_registers_pgvector(database: str) -> None:
    import numpy as np

    pool = db.pool(database)
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            value = conn.execute("SELECT '[1,2,3]'::vector").fetchone()
            assert value is not None and np.allclose(value[0].to_numpy(), [1, 2, 3])
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("100",)
    finally:
        pool.close()


def test_pgvector_computes_distances_and_indexes(database: str) -> None:
    """The vector math runs on this CPU (a -march=native pgvector build dies with SIGILL
    on the first distance, e.g. the first insert into an HNSW index)."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE vec_probe (v vector(3))")
        conn.execute("CREATE INDEX ON vec_probe USING hnsw (v vector_cosine_ops)")
        conn.execute("INSERT INTO vec_probe VALUES ('[1,0,0]'), ('[0,1,0]'), ('[1,1,0]')")
        rows = conn.execute(
            "SELECT v::text, v <=> '[1,0,0]' FROM vec_probe ORDER BY v <=> '[1,0,0]' LIMIT 2"
        ).fetchall()
    assert [r[0] for r in rows] == ["[1,0,0]", "[1,1,0]"]
    assert [r[1] for r in rows] == pytest.approx([0.0, 1 - 2**-0.5], abs=1e-6)


def test_user_state_of_earlier_versions_is_brought_to_the_ordered_shape(
    empty_db: str, tmp_path: Path
) -> None:
    """0203: a dedup window stored as a jsonb object (keys sorted, the newest ids wrongly
    pruned) is rebuilt from user_events in acceptance order; a position without its
    topic's incarnation gets the unknown one."""
    import json
    import shutil

    from recsys.users.state import UNKNOWN_INCARNATION, UserState

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for m in db.discover_migrations():
        if m.version < 203:
            shutil.copy(m.path, earlier / m.path.name)
    db.apply_migrations(empty_db, earlier)
    ids = ["zz-9", "a", "m-long-id", "b2", "0", "yy"]  # log order; jsonb sorts them otherwise
    state = {
        "user_id": "u1",
        "events": 6,
        # what the old worker left: 3 ids kept, in jsonb's order, the newest one ("yy") lost
        "seen": {
            "a": "2026-03-01T12:00:01Z",
            "b2": "2026-03-01T12:00:03Z",
            "0": "2026-03-01T12:00:04Z",
        },
        "last_position": [1, 41],
    }
    with psycopg.connect(empty_db) as conn:
        for i, eid in enumerate(ids):
            conn.execute(
                "INSERT INTO user_events (event_id, user_id, event_type, occurred_at, positive, "
                "kafka_partition, kafka_offset, stored_at) VALUES (%s, 'u1', 'VIEW', "
                "'2026-03-01T12:00:00Z'::timestamptz + %s * interval '1 second', false, 1, %s, "
                "'2026-03-01T13:00:00Z'::timestamptz + (%s / 2) * interval '1 minute')",
                (eid, i, 36 + i, i),
            )
        conn.execute(
            "INSERT INTO user_state (user_id, version, warmth, positives, engagement, state) "
            "VALUES ('u1', 6, 'COLD', 0, 0, %s::jsonb)",
            (json.dumps(state),),
        )
    db.apply_migrations(empty_db)
    with psycopg.connect(empty_db) as conn:
        row = conn.execute("SELECT state::text FROM user_state").fetchone()
        assert row is not None
        migrated = UserState.model_validate_json(row[0])
        assert conn.execute("SELECT count(kafka_topic_id) FROM user_events").fetchone() == (0,)
    assert list(migrated.seen) == ["b2", "0", "yy"]  # the newest three, oldest first
    assert migrated.last_position == (UNKNOWN_INCARNATION, 1, 41)


def test_covisitation_moves_to_one_row_per_pair_and_reads_the_same(
    empty_db: str, tmp_path: Path
) -> None:
    """0204: the directed ``covisit`` rows (each pair twice, same weight) become one row
    per pair in byte order, and the ``covisit`` view gives back exactly the old rows."""
    import shutil

    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for m in db.discover_migrations():
        if m.version < 204:
            shutil.copy(m.path, earlier / m.path.name)
    db.apply_migrations(empty_db, earlier)
    # "B" < "a" in byte order, not in most linguistic collations; "é" sorts after "z"
    weights = {("a", "B"): 3.5, ("x-1", "x-10"): -2.25, ("z", "é"): 1e-3, ("a", "x-1"): 7.0}
    before = {**weights, **{(b, a): w for (a, b), w in weights.items()}}
    with psycopg.connect(empty_db) as conn:
        for (a, b), w in before.items():
            conn.execute(
                "INSERT INTO covisit (item_id, other_id, log2_weight) VALUES (%s, %s, %s)",
                (a, b, w),
            )
    db.apply_migrations(empty_db)
    with psycopg.connect(empty_db) as conn:
        pairs = conn.execute("SELECT item_a, item_b, log2_weight FROM covisit_pair").fetchall()
        view = conn.execute("SELECT item_id, other_id, log2_weight FROM covisit").fetchall()
    assert len(pairs) == len(weights)
    assert all(a < b for a, b, _ in pairs)  # Python's order is the stored order
    assert {(r[0], r[1]): r[2] for r in view} == before and len(view) == len(before)
