"""A newcomer's first hour on the real stack (broker, Postgres, enrich + users + serve
workers): the README's publishing snippet runs as written, and a query on a tiny
catalog is answered with everything that can be served — a keyword guess orders the
list, only a confident LLM reading filters it, and a short list says why it is short."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from recsys.llm.client import LlmClient
from recsys.records import CatalogChange, EvidenceKind, LlmInvolvement, Route, UserEvent
from stack.embedded import EmbeddedBroker
from streams import admin
from streams.client import RecClient
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from tests.helpers import await_until, read_topic
from workers.bootstrap import Overrides, bootstrap
from workers.runtime import serve_forever
from workers.serve_worker import ServeWorker

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

#: The README's item "42" plus three more: the four-item catalog of the report.
OTHERS = [
    CatalogChange(
        item_id="43",
        version=1,
        title="Ronin (1998)",
        categories=["Action", "Crime", "Thriller"],
        description="Mercenaries chase a briefcase across France.",
    ),
    CatalogChange(
        item_id="44",
        version=1,
        title="Toy Story (1995)",
        categories=["Animation", "Children", "Comedy"],
        description="Toys come to life when nobody is watching.",
    ),
    CatalogChange(
        item_id="45",
        version=1,
        title="Notting Hill (1999)",
        categories=["Comedy", "Romance"],
        description="A bookseller falls for a film star.",
    ),
]
HEAT = CatalogChange(item_id="42", version=7, title="Heat (1995)", categories=["Crime", "Thriller"])


def readme_snippet() -> str:
    """The ```python block of the README's "Quick start", exactly as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text[text.index("## Quick start") :]
    quick = quick[: quick.index("\n## ", 1)]
    blocks = re.findall(r"```python\n(.*?)```", quick, flags=re.S)
    assert len(blocks) == 1, "the Quick start should hold exactly one Python block"
    return blocks[0]


def _eligible_items(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM items WHERE NOT deleted AND available "
            "AND raw_embedding IS NOT NULL"
        ).fetchone()
    return int(row[0]) if row else 0


def _user_positives(dsn: str, user_id: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT positives FROM user_state WHERE user_id = %s", (user_id,)
        ).fetchone()
    return int(row[0]) if row else 0


@asynccontextmanager
async def first_hour_stack(
    settings: Settings, embedder: Any, serve_llm: LlmClient | None = None
) -> AsyncIterator[Settings]:
    """Topics, then the enrich, users and serve workers in this process (LLM off unless
    ``serve_llm`` is given to the serve worker); the three extra items are enriched."""
    admin.ensure_topics(settings)
    stop = asyncio.Event()
    contexts = {
        name: bootstrap(
            settings,
            Overrides(embedder=embedder, llm_client=serve_llm if name == "serve" else None),
        )
        for name in ("enrich", "users", "serve")
    }
    tasks = [asyncio.create_task(serve_forever(n, c, stop)) for n, c in contexts.items()]
    try:
        await await_until(
            lambda: contexts["serve"].handles.get(ServeWorker) is not None,
            120,
            what="serve worker start",
        )
        with RecordProducer(settings) as producer:
            for change in OTHERS:
                producer.publish_catalog_change(change)
        dsn = settings.database_url.get_secret_value() if settings.database_url else ""
        await await_until(
            lambda: _eligible_items(dsn) >= len(OTHERS), 120, what="three items enriched"
        )
        yield settings
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    assert settings.database_url is not None
    env.update(
        STREAMREC_HOME=str(settings.home),
        STREAMREC_BOOTSTRAP_SERVERS=settings.kafka_bootstrap,
        STREAMREC_DATABASE_URL=settings.database_url.get_secret_value(),
        STREAMREC_TOPIC_PREFIX=settings.topic_prefix,
        STREAMREC_USER_PARTITIONS=str(settings.user_partitions),
        STREAMREC_CATALOG_PARTITIONS=str(settings.catalog_partitions),
        STREAMREC_LOG_PARTITIONS=str(settings.log_partitions),
        STREAMREC_FETCH_WAIT_MS="5",
        PYTHONPATH=str(REPO),
    )
    return env


async def test_the_readme_snippet_runs_as_written(
    settings: Settings, broker: EmbeddedBroker, embedder: Any, tmp_path: Path
) -> None:
    snippet = readme_snippet()
    script = tmp_path / "quick_start.py"
    script.write_text(snippet, encoding="utf-8")
    async with first_hour_stack(settings, embedder):
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_env(settings),
        )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines, result.stderr
    match = re.fullmatch(r"(\w+) \[(.*)\]", lines[0])
    assert match, f"expected `ROUTE [ids]`, got {lines[0]!r}"
    assert match[1] in {r.value for r in Route}
    ids = re.findall(r"'([^']+)'", match[2])
    # every item that can be served is served: the keyword guess "heist" → Crime orders
    # the list, it no longer filters it down to the one Crime film
    assert {"43", "44", "45"} <= set(ids) <= {"42", "43", "44", "45"}, result.stdout
    # fewer than k=10 items: the second line says how many could be served and why
    assert len(lines) == 2 and lines[1].startswith(f"only {len(ids)} of the "), lines


async def _heat_clicked(settings: Settings) -> None:
    """The README's item and click, published and stored (what the snippet does)."""
    with RecordProducer(settings) as producer:
        producer.publish_catalog_change(HEAT)
        producer.publish_user_event(UserEvent(user_id="u1", event_type="CLICK", item_id="42"))
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    await await_until(lambda: _eligible_items(dsn) == 4, 60, what="Heat enriched")
    await await_until(lambda: _user_positives(dsn, "u1") >= 1, 60, what="u1's click stored")


async def test_a_keyword_guess_orders_the_list_and_a_short_list_says_why(
    settings: Settings, broker: EmbeddedBroker, embedder: Any
) -> None:
    """Every request explores (ε = 1): POPULARITY and CF find nothing on a catalog
    without interactions, and content retrieval tops the list up — an explored route
    never shrinks the answer either."""
    settings = settings.with_overrides(route_epsilon=1.0)
    async with first_hour_stack(settings, embedder):
        await _heat_clicked(settings)
        with RecClient(settings) as client:
            responses = [
                await client.arequest(
                    "u1", k=10, query="a tense heist film", timeout_s=30, deadline_ms=5000
                )
                for _ in range(4)
            ]
    assert {r.route for r in responses} <= {Route.POPULARITY, Route.CF, Route.CONTENT}
    for r in responses:  # everything u1 has not seen, the Crime film first
        assert [i.item_id for i in r.items][:1] == ["43"], r
        assert sorted(i.item_id for i in r.items) == ["43", "44", "45"], r
    response = responses[0]
    assert not response.llm_used
    assert response.eligible_count == 3
    assert response.short_reason == (
        "only 3 of the 4 eligible items in the catalog were not already seen, consumed or "
        "excluded by the request (1 were)"
    )
    assert response.items[0].evidence[0].kind is EvidenceKind.QUERY_CONSTRAINT
    assert all(i.ranker_rank is None for i in response.items)  # no LLM reranked
    logs = read_topic(settings, settings.topic_prefix + "rec.llm-log", 2 * len(responses))
    decisions = {
        (r.use_case.value, r.decision)
        for r in (AvroSerde().decode(m.value(), LlmInvolvement) for m in logs)
        if r.request_id == response.request_id
    }
    assert ("INTENT", "llm_off") in decisions


async def test_a_confident_llm_reading_filters_and_soft_matches_fill_where_allowed(
    settings: Settings, broker: EmbeddedBroker, embedder: Any, llm_server: Any
) -> None:
    client = LlmClient(
        base_url=llm_server.base_url, model=llm_server.model, max_retries=0, timeout_s=20.0
    )
    try:
        async with first_hour_stack(settings, embedder, serve_llm=client):
            await _heat_clicked(settings)
            with RecClient(settings) as rec:
                filled = await rec.arequest(
                    "u1", k=10, query="a tense heist film", timeout_s=60, deadline_ms=30000
                )
                strict = await rec.arequest(
                    "u1",
                    k=10,
                    query="a tense heist film",
                    fill_with_soft_matches=False,
                    timeout_s=60,
                    deadline_ms=30000,
                )
    finally:
        await client.aclose()
    # the simulated model reads Crime with confidence 0.9: a hard constraint, which only
    # Ronin meets among what u1 has not seen; the two others fill as soft matches
    for response in (filled, strict):
        assert response.eligible_count == 1
        assert [i.item_id for i in response.items][:1] == ["43"], response
        assert "pass the query's hard constraints (Crime)" in (response.short_reason or "")
    assert [i.item_id for i in filled.items][1:] in (["44", "45"], ["45", "44"])
    soft = [e.value for i in filled.items[1:] for e in i.evidence if e.kind is EvidenceKind.OTHER]
    assert soft == ["a soft match outside the query's constraints (Crime)"] * 2
    assert (filled.short_reason or "").endswith(
        "2 soft match(es) outside the constraints fill the rest"
    )
    assert [i.item_id for i in strict.items] == ["43"]
    assert (strict.short_reason or "").endswith("the request asked for no soft matches")
    # the LLM reranked the three: each item records where the ranker had put it
    assert filled.llm_used
    ranks = sorted(i.ranker_rank or 0 for i in filled.items)
    assert ranks == [1, 2, 3], filled.llm_fallback_reason
