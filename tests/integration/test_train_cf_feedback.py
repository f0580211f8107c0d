"""`streamrec train-cf --feedback` on the real embedded Postgres: archived
``feedback.examples`` become weak negatives that move the model, and the run records
what it read."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from recsys import db
from recsys.archive import ArchivedMessage, ArchiveWriter
from recsys.cf.als_store import PgAls
from recsys.records import FeedbackExample
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from tests.integration.test_train_cf import (
    FLAGS,
    NOW,
    failed,
    home,
    insert,
    ok,
    rows_of,
    streamrec,
    taste_events,
)

pytestmark = pytest.mark.integration

PREFIX = "fb."
IGNORED = [f"a{i}" for i in range(30, 40)]  # shown to every a-user, never acted on


def write_examples(root: Path, clicked: dict[str, set[str]]) -> int:
    """Every a-user (even u) was shown a30..a39 twice, one LLM-touched, and acted on none
    of them (unless they had clicked it: then a click follows)."""
    topic = Topics(Settings(topic_prefix=PREFIX)).feedback_examples.name
    schema = AvroSerde().codec(FeedbackExample).schema
    writer = ArchiveWriter(root, roll_bytes=1 << 20, roll_s=3600.0)
    writer.register(topic, schema)
    offset = 0
    for u in range(0, 60, 2):
        user = f"u{u}"
        for n in range(2):
            request = f"r-{user}-{n}"
            for rank, item in enumerate(IGNORED, start=1):
                example = FeedbackExample(
                    example_id=f"{request}:{item}",
                    request_id=request,
                    user_id=user,
                    item_id=item,
                    rank=rank,
                    route="POPULARITY",
                    warmth_bucket="WARMING",
                    llm_used=n == 1,
                    propensity=0.9,
                    clicked=item in clicked.get(user, set()),
                    impression_at=NOW - timedelta(hours=1),
                )
                writer.write(
                    ArchivedMessage(
                        topic=topic,
                        partition=0,
                        offset=offset,
                        timestamp_ms=int(example.impression_at.timestamp() * 1000),
                        key=user,
                        headers=[],
                        schema_id=1,
                        value=example.model_dump(mode="python"),
                        value_schema=schema,
                    )
                )
                offset += 1
    writer.close()
    return offset


async def ignored_rank(database: str, version: str) -> float:
    """Mean rank, among a-items, of the ignored items for a-users' typical profile."""
    pool = db.async_pool(database, max_size=2)
    await pool.open(wait=True)
    try:
        model = await PgAls(pool, cache_s=0).load(version)
    finally:
        await pool.close()
    vector = model.fold_in([(f"a{i}", 2.0) for i in range(0, 30, 3)])
    assert vector is not None
    a_items = [i for i in model.item_ids if i.startswith("a")]
    scores = {i: float(model.item_factors[model.item_index[i]] @ vector) for i in a_items}
    order = sorted(a_items, key=lambda i: -scores[i])
    return float(np.mean([order.index(i) for i in IGNORED if i in scores]))


async def test_weak_negatives_from_archived_examples_push_ignored_items_down(
    database: str, tmp_path: Path
) -> None:
    rows = taste_events()
    insert(database, rows)
    clicked: dict[str, set[str]] = {}
    for _, user, item, *_ in rows:
        clicked.setdefault(user, set()).add(item)
    archive = tmp_path / "archive"
    n = write_examples(archive, clicked)
    env = {"STREAMREC_TOPIC_PREFIX": PREFIX, **home(tmp_path)}
    ok(streamrec("train-cf", "--database", database, *FLAGS, **env))
    plain = rows_of(database, "SELECT version FROM als_models WHERE active")[0][0]
    out = ok(
        streamrec(
            "train-cf",
            "--database",
            database,
            *FLAGS,
            "--feedback",
            "--feedback-archive",
            str(archive),
            "--negative-weight",
            "4",
            **env,
        )
    )
    # the archive holds no user events: the events come from Postgres, the examples
    # from the archive
    assert f"feedback: {n} examples" in out and "LLM-touched" in out
    [(version, source, params)] = rows_of(
        database, "SELECT version, source, params FROM als_models WHERE active"
    )
    feedback = params["weights"]["feedback"]
    assert source == "postgres+feedback:archive"
    assert feedback["examples"] == n and feedback["llm_touched"] == n // 2
    assert feedback["weights"] == {"negative": 4.0, "ips_clip": 0.0, "llm_weight": 1.0}
    acted = sum(len(clicked[f"u{u}"] & set(IGNORED)) for u in range(0, 60, 2))
    assert feedback["acted_on"] == 2 * acted
    # cells: a-users x ignored items they never clicked (two impressions add up)
    assert feedback["negative_cells"] == 30 * len(IGNORED) - acted
    before, after = await ignored_rank(database, plain), await ignored_rank(database, version)
    assert after > before + 3, (before, after)  # pushed down among the a-items

    # an LLM weight of 0 ignores the LLM-touched half: fewer negatives' weight, same cells
    ok(
        streamrec(
            "train-cf",
            "--database",
            database,
            *FLAGS,
            "--feedback",
            "--feedback-archive",
            str(archive),
            "--negative-weight",
            "4",
            "--llm-weight",
            "0",
            **env,
        )
    )
    [(params,)] = rows_of(database, "SELECT params FROM als_models WHERE active")
    assert params["weights"]["feedback"]["weights"]["llm_weight"] == 0.0


def test_neutral_default_weights_say_that_they_change_nothing(
    database: str, tmp_path: Path
) -> None:
    insert(database, taste_events())
    archive = tmp_path / "archive"
    n = write_examples(archive, {})
    out = ok(
        streamrec(
            "train-cf",
            "--database",
            database,
            *FLAGS,
            "--feedback",
            "--feedback-archive",
            str(archive),
            STREAMREC_TOPIC_PREFIX=PREFIX,
            **home(tmp_path),
        )
    )
    assert f"feedback: {n} examples" in out and "weights are neutral" in out
    [(params,)] = rows_of(database, "SELECT params FROM als_models WHERE active")
    assert params["weights"]["feedback"]["negative_cells"] == 0


def test_feedback_without_examples_says_so(database: str, tmp_path: Path) -> None:
    insert(database, taste_events(users=4))
    result = streamrec(
        "train-cf",
        "--database",
        database,
        *FLAGS,
        "--feedback",
        "--feedback-archive",
        str(tmp_path),
        **home(tmp_path),
    )
    failed(result, "no archive of")
    bad = streamrec(
        "train-cf", "--database", database, "--feedback", "--ips-clip", "0.5", **home(tmp_path)
    )
    failed(bad, "ips_clip must be 0 (off) or at least 1")
