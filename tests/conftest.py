"""Shared fixtures: the real embedded broker and Postgres, once per session.

Each test gets its own topic prefix (so topics never leak between tests) and its own
database cloned from a migrated template (so tables start empty).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recsys import db
from stack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from streams.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEMPLATE_DB = "streamrec_template"
REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session, on a free port."""
    b = EmbeddedBroker(port=free_port())
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """One embedded Postgres for the session, with a migrated template database."""
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    pg.start()
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    db.apply_migrations(pg.dsn(TEMPLATE_DB))
    yield pg
    pg.destroy()


def _fresh_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield postgres.dsn(name)
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """DSN of a fresh database with every migration applied."""
    yield from _fresh_database(postgres)


@pytest.fixture(scope="module")
def module_database(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A fresh migrated database shared by one test module (an expensive world in it)."""
    yield from _fresh_database(postgres)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: its own home and topic prefix, fast group joins."""
    base: dict[str, object] = {
        "home": tmp_path / "home",
        "topic_prefix": f"t{uuid.uuid4().hex[:10]}.",
        "user_partitions": 2,
        "catalog_partitions": 2,
        "log_partitions": 1,
        "session_timeout_ms": 3000,
        "batch_fetch_wait_ms": 20,
        "background_fetch_wait_ms": 20,
        "fetch_wait_ms": 5,
        "admin_timeout_s": 10.0,
        # no metrics endpoints unless a test asks for them on ports of its own: the default
        # range is one per machine, so two worker processes of a test (or two test
        # sessions) would collide on it
        "metrics_port": 0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, broker: EmbeddedBroker, database: str) -> Settings:
    """Settings pointing at the session broker and a fresh database."""
    return make_settings(tmp_path, bootstrap_servers=broker.bootstrap, database_url=database)


@pytest.fixture
def kafka_settings(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    """Settings for tests that need only the broker."""
    return make_settings(tmp_path, bootstrap_servers=broker.bootstrap)


@pytest.fixture(autouse=True)
def _quiet_librdkafka() -> None:
    logging.getLogger("librdkafka").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    """The MovieLens folder from STREAMREC_MOVIELENS_PATH (or the default); skip if absent."""
    from recsys.movielens import MovieLens

    path = Settings().movielens_path
    if not path.is_absolute():
        path = (REPO / path).resolve()
    if not MovieLens.available(path):
        pytest.skip(
            f"MovieLens ml-latest-small not found at {path}; set STREAMREC_MOVIELENS_PATH "
            "to run this test"
        )
    return path


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real all-MiniLM-L6-v2 embedder, loaded once per session (from its wheel)."""
    from recsys.embedding import SentenceTransformerEmbedder

    model = SentenceTransformerEmbedder()
    assert model.dim == 384  # load now, outside any test's timing
    return model


@pytest.fixture
def llm_server() -> Iterator[Any]:
    """Our simulated OpenAI-compatible LLM on a free port, honest until told otherwise."""
    from testkit.llm_server import SimulatedLlmServer

    with SimulatedLlmServer() as server:
        yield server
