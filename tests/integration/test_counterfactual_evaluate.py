"""Logged traffic → archive → counterfactual replay ("no LLM") → evaluate, on the real
stack; and the CLI's answers to a missing archive or a bad range."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jobs.evaluate import EvaluateOptions, run_evaluate
from jobs.replay import ReplayOptions, run_replay
from recsys.archive import list_files, read_archive
from recsys.exceptions import ConfigurationError
from recsys.records import (
    EventType,
    FeedbackExample,
    LlmInvolvement,
    LlmUseCase,
    RecommendedItem,
    RecResponse,
    Route,
    UserEvent,
    WarmthBucket,
)
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from stack.supervisor import settings_env
from streams import admin
from streams.producer import RecordProducer
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from tests.helpers import await_until, read_topic
from workers.archive_worker import ArchiveWorker
from workers.bootstrap import bootstrap
from workers.runtime import serve_forever

REPO = Path(__file__).resolve().parents[2]
N_REQUESTS = 24


def _traffic(settings: Settings) -> dict[str, int]:
    """Synthetic history, logged requests with scripted production responses (every third
    one LLM-reranked), their LLM log, feedback and later outcomes."""
    workload = SyntheticWorkload(WorkloadConfig(n_items=60, n_users=15, seed=3))
    history = list(workload.events())
    requests = workload.requests(N_REQUESTS, new_user_share=0.0)
    topics = Topics(settings)
    counts = {"events": len(history), "llm": 0, "outcomes": 0}
    with RecordProducer(settings) as producer:
        for event in history:
            producer.publish_user_event(event)
        for i, request in enumerate(requests):
            producer.publish_request(request)
            llm = i % 3 == 0
            items = [f"item-{(i * 7 + j) % 60:05d}" for j in range(5)]
            response = RecResponse(
                request_id=request.request_id,
                user_id=request.user_id,
                route=Route.CF,
                warmth_bucket=WarmthBucket.WARM if i % 2 else WarmthBucket.COLD,
                propensity=0.5 if llm else 1.0,
                llm_used=llm,
                latency_ms=20.0 + i,
                produced_at=request.requested_at,
                items=[
                    RecommendedItem(item_id=it, rank=n, score=1.0, source="cf")
                    for n, it in enumerate(items, 1)
                ],
            )
            producer.send(topics.rec_responses, request.user_id, response)
            if llm:
                counts["llm"] += 1
                producer.send(
                    topics.llm_log,
                    request.request_id,
                    LlmInvolvement(
                        request_id=request.request_id,
                        user_id=request.user_id,
                        use_case=LlmUseCase.RERANK,
                        called=True,
                        used=True,
                        decision="called",
                        cost_usd=0.01,
                        hallucinated_ids=["ghost"] if i % 6 == 0 else [],
                    ),
                )
            clicked = i % 4 == 0
            producer.send(
                topics.feedback_examples,
                request.user_id,
                FeedbackExample(
                    example_id=f"{request.request_id}:{items[0]}",
                    request_id=request.request_id,
                    user_id=request.user_id,
                    item_id=items[0],
                    rank=1,
                    route="CF",
                    warmth_bucket=response.warmth_bucket.value,
                    llm_used=llm,
                    propensity=response.propensity,
                    clicked=clicked,
                    impression_at=response.produced_at,
                ),
            )
            if clicked:
                counts["outcomes"] += 1
                producer.publish_user_event(
                    UserEvent(
                        user_id=request.user_id,
                        event_type=EventType.CLICK,
                        item_id=items[0],
                        occurred_at=request.requested_at + timedelta(seconds=30),
                    )
                )
    return counts


async def _archive_everything(settings: Settings, expected: int) -> None:
    ctx = bootstrap(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever("archive", ctx, stop))
    try:
        await await_until(
            lambda: (
                (handle := ctx.handles.get(ArchiveWorker)) is not None
                and handle.loop.stats.consumed >= expected
            ),
            90,
            what="everything consumed by the archive worker",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # finalizes the open files


async def test_no_llm_counterfactual_and_evaluation(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_overrides(
        archive_dir=tmp_path / "archive", archive_user_events=True, archive_roll_s=60.0
    )
    admin.ensure_topics(settings)
    topics = Topics(settings)
    counts = _traffic(settings)
    total = counts["events"] + counts["outcomes"] + 3 * N_REQUESTS + counts["llm"]
    await _archive_everything(settings, total)
    root = settings.archive_root
    originals = [m.value for m in read_archive(root, topics.rec_responses.name)]
    assert len(originals) == N_REQUESTS
    assert sum(1 for r in originals if r["llm_used"]) == counts["llm"] > 0

    # counterfactual from the archive: policy "no-llm", stored beside the originals
    summary = run_replay(
        settings, ReplayOptions(topic="rec.requests", source="archive", policy="no-llm")
    )
    assert summary.written == N_REQUESTS and summary.llm_used == 0
    cf_root = root / "counterfactual" / "no-llm"
    cf = [
        RecResponse.model_validate(m.value)
        for m in read_archive(cf_root, topics.rec_responses.name)
    ]
    assert all(not r.llm_used for r in cf)
    assert {r.policy for r in cf} == {"no-llm"}
    assert sorted(r.request_id for r in cf) == sorted(r["request_id"] for r in originals)
    assert all(r.items for r in cf)  # the stand-in had history to rank by
    with pytest.raises(ConfigurationError, match="--overwrite"):
        run_replay(
            settings,
            ReplayOptions(topic="rec.requests", source="archive", policy="no-llm"),
        )

    # the same from Kafka, also published to a topic (never the live responses topic)
    out_topic = f"{settings.topic_prefix}cf.responses"
    run_replay(
        settings,
        ReplayOptions(
            topic="rec.requests",
            source="kafka",
            policy="no-llm",
            out_dir=tmp_path / "cf-kafka",
            out_topic=out_topic,
        ),
    )
    published = [
        AvroSerde().decode(m.value(), RecResponse)
        for m in read_topic(settings, out_topic, N_REQUESTS)
    ]
    assert len(published) == N_REQUESTS and not any(r.llm_used for r in published)
    assert sorted(r.request_id for r in published) == sorted(r.request_id for r in cf)
    with pytest.raises(ConfigurationError, match="live responses topic"):
        run_replay(
            settings,
            ReplayOptions(
                topic="rec.requests",
                policy="no-llm",
                out_dir=tmp_path / "x",
                out_topic="rec.responses",
            ),
        )

    # evaluate production against the counterfactual, with JSON and HTML out
    report = run_evaluate(
        settings,
        EvaluateOptions(
            policies=("no-llm",), k=5, json_out=tmp_path / "r.json", html=tmp_path / "r.html"
        ),
    )
    assert report["relevance_source"] == "user.events"
    prod = report["systems"]["production"]["overall"]
    assert prod["n"] == N_REQUESTS
    assert prod["llm_involvement_rate"] == pytest.approx(counts["llm"] / N_REQUESTS)
    assert prod["cost_usd_total"] == pytest.approx(0.01 * counts["llm"])
    assert prod["hallucination_rate"] == pytest.approx(4 / 8)  # i = 0, 6, 12, 18 of 8 calls
    # every clicked first item is relevant to its request: hit rate 1 over judged ones
    assert prod["n_judged"] >= counts["outcomes"] and prod["hit_rate@5"] is not None
    assert report["systems"]["no-llm"]["overall"]["llm_involvement_rate"] == 0.0
    assert set(report["systems"]["production"]["by_llm_used"]) == {"true", "false"}
    assert report["off_policy"]["n_logged"] == N_REQUESTS
    assert json.loads((tmp_path / "r.json").read_text())["k"] == 5
    assert "data:image/png;base64," in (tmp_path / "r.html").read_text()

    # the CLI: JSON on stdout, and clear errors (exit 2, one line, no traceback)
    env = settings_env(settings)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.app", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = cli("evaluate", "--json", "-", "--k", "3")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["systems"]["production"]["overall"]["n"] == N_REQUESTS
    for args, message in [
        (
            (
                "replay",
                "rec.responses",
                "--source",
                "archive",
                "--archive",
                str(tmp_path / "none"),
                "--export",
                str(tmp_path / "x.csv"),
            ),
            "no archive of",
        ),
        (
            (
                "replay",
                "rec.responses",
                "--from-offset",
                "5",
                "--to-offset",
                "5",
                "--export",
                str(tmp_path / "x.csv"),
            ),
            "empty offset range",
        ),
        (("evaluate", "--archive", str(tmp_path / "none")), "no archived responses"),
    ]:
        bad = cli(*args)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert message in bad.stderr and "Traceback" not in bad.stderr + bad.stdout
    assert not list_files(tmp_path / "none", topics.rec_responses.name)
