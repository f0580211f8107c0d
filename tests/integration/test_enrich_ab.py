"""The enrichment A/B against real parts: our OpenAI-compatible simulated server through the
openai SDK, the real embedding model, the `streamrec ab-enrich` command as a user runs
it, and a small run on MovieLens ml-latest-small (skipped when the data is absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.ab_enrich import AbCommandOptions, run_ab_enrich
from recsys.evaluation.enrich_ab import (
    JUDGE_PROMPT,
    AbLlm,
    AbOptions,
    QuerySetConfig,
    load_query_set,
    run_enrichment_ab,
)
from recsys.llm.client import LlmClient
from recsys.llm.prompts import unquote
from recsys.movielens import MovieLens
from streams.settings import Settings
from testkit.llm_server import SimulatedLlmServer
from tests.movielens_tiny import write_tiny_movielens

REPO = Path(__file__).resolve().parents[2]


def _streamrec(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
        env={**clean, **env},
    )


def _clients(server: SimulatedLlmServer, judge_model: str) -> AbLlm:
    return AbLlm(
        client=LlmClient(base_url=server.base_url, model=server.model),
        judge_client=LlmClient(base_url=server.base_url, model=judge_model),
        simulated=True,
    )


def test_judge_runs_on_the_simulated_server_and_records_prompt_and_model(
    tmp_path: Path, llm_server: SimulatedLlmServer, embedder: Any
) -> None:
    qs = load_query_set(MovieLens(write_tiny_movielens(tmp_path / "ml")))
    pinned = "streamrec-simulated-judge-2026-01-01"
    report = run_enrichment_ab(
        qs, embedder, _clients(llm_server, pinned), AbOptions(judge_queries=4, resamples=200)
    )
    enrichment = report["enrichment"]
    assert enrichment["status"] == "simulated" and enrichment["simulated"] is True
    assert enrichment["enriched"] == len(qs.items) == llm_server.calls_for("enrichment")
    assert report["arms_identical"] is False

    judge = report["judge"]
    assert judge["status"] == "ran" and judge["simulated"] is True
    assert judge["prompt_name"] == "justification_judge"
    assert judge["prompt_version"] == JUDGE_PROMPT.version
    assert judge["model"] == pinned and judge["answered_by"] == [pinned]
    assert judge["queries"] == 4 and judge["calls"] == 8 and judge["failures"] == {}
    assert judge["scores"]["all"]["n"] == 4
    assert 1.0 <= judge["scores"]["all"]["raw"] <= 5.0

    calls = [r for r in llm_server.requests if r.schema_name == "justification_judge"]
    assert len(calls) == 8
    assert {r.model for r in calls} == {pinned} and {r.temperature for r in calls} == {0.0}
    shown = unquote(calls[0].prompt_text(), "JUDGE_INPUT")
    assert shown["request"] in {q.text for q in qs.queries}
    assert 1 <= len(shown["items"]) <= 3 and all(i["justification"] for i in shown["items"])
    # the enriched arm shows the enrichment (the simulated one sets a mood line)
    enriched_texts = [
        i["justification"]
        for r in calls
        for i in unquote(r.prompt_text(), "JUDGE_INPUT")["items"]
        if "Mood:" in i["justification"]
    ]
    assert enriched_texts


def test_invalid_judge_answers_are_counted_never_scored(
    tmp_path: Path, llm_server: SimulatedLlmServer, embedder: Any
) -> None:
    llm_server.register(
        "justification_judge",
        lambda messages, schema, mode: {"scores": [{"item_id": "nope", "score": 5, "reason": "x"}]},
    )
    qs = load_query_set(MovieLens(write_tiny_movielens(tmp_path / "ml")))
    report = run_enrichment_ab(
        qs, embedder, _clients(llm_server, llm_server.model), AbOptions(judge_queries=2)
    )
    judge = report["judge"]
    assert judge["status"] == "ran"
    assert judge["failures"] == {"schema_violation": 4}
    assert judge["scores"] == {}


def test_command_reports_the_judge_skipped_without_an_endpoint(tmp_path: Path) -> None:
    folder = write_tiny_movielens(tmp_path / "ml")
    out = tmp_path / "ab.json"
    result = _streamrec(
        "ab-enrich",
        "--movielens",
        str(folder),
        "--bootstrap",
        "200",
        "--json",
        str(out),
        STREAMREC_HOME=str(tmp_path / "home"),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "judge skipped: no LLM endpoint configured" in result.stdout
    assert "enrichment off: no LLM endpoint configured" in result.stdout
    report = json.loads(out.read_text())
    assert report["judge"]["status"] == "skipped"
    assert report["judge"]["reason"].startswith("skipped: no LLM endpoint configured")
    assert report["enrichment"]["status"] == "off" and report["arms_identical"] is True
    assert report["query_set"]["queries"] == {"tag": 3, "conversation": 3}


def test_command_without_movielens_is_a_clear_error(tmp_path: Path) -> None:
    result = _streamrec("ab-enrich", STREAMREC_MOVIELENS_PATH=str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert f"no MovieLens data at {tmp_path / 'nowhere'}" in result.stderr
    assert "--movielens DIR or set STREAMREC_MOVIELENS_PATH" in result.stderr
    assert "Traceback" not in result.stderr


def test_command_with_the_simulated_llm_labels_it_and_writes_html(tmp_path: Path) -> None:
    folder = write_tiny_movielens(tmp_path / "ml")
    settings = Settings(home=tmp_path / "home")
    report = run_ab_enrich(
        settings,
        AbCommandOptions(
            movielens=folder,
            llm="simulated",
            judge_queries=2,
            resamples=200,
            json_out=tmp_path / "ab.json",
            html=tmp_path / "ab.html",
            queries_out=tmp_path / "queries.json",
        ),
        simulated=SimulatedLlmServer,
    )
    assert report["enrichment"]["simulated"] is True and report["judge"]["simulated"] is True
    assert json.loads((tmp_path / "ab.json").read_text())["judge"]["status"] == "ran"
    html = (tmp_path / "ab.html").read_text()
    assert "SIMULATED LLM" in html and "SIMULATED judge" in html
    assert JUDGE_PROMPT.version in html and "data:image/png;base64," in html
    frozen = json.loads((tmp_path / "queries.json").read_text())
    assert frozen["fingerprint"] == report["query_set"]["fingerprint"]
    assert len(frozen["query_list"]) == 6


@pytest.mark.movielens
def test_small_run_on_movielens(movielens_path: Path, embedder: Any) -> None:
    config = QuerySetConfig(max_tag_queries=8, max_conversations=4, max_items=120)
    qs = load_query_set(MovieLens(movielens_path), config)
    assert qs.fingerprint == load_query_set(MovieLens(movielens_path), config).fingerprint
    assert len(qs.by_kind("tag")) == 8 and len(qs.by_kind("conversation")) == 4
    assert all(c.description == "" for c in qs.items)
    report = run_enrichment_ab(qs, embedder, opts=AbOptions(resamples=200))
    for kind in ("tag", "conversation", "all"):
        for stats in report["retrieval"][kind].values():
            assert 0.0 <= stats["raw"] <= 1.0 and stats["delta"] == 0.0
    assert report["retrieval"]["all"]["recall@5"]["n"] == 12
    # 120 items of which each tag query has at least 3 relevant: better than chance
    assert report["retrieval"]["tag"]["mrr"]["raw"] > 3 / 120
    assert report["judge"]["status"] == "skipped"


def test_command_uses_the_configured_endpoint_with_a_pinned_judge(
    tmp_path: Path, llm_server: SimulatedLlmServer
) -> None:
    settings = Settings(
        home=tmp_path / "home", llm_base_url=llm_server.base_url, llm_model=llm_server.model
    )
    report = run_ab_enrich(
        settings,
        AbCommandOptions(
            movielens=write_tiny_movielens(tmp_path / "ml"),
            judge_model="judge-2026-01-01",
            judge_queries=2,
            resamples=200,
        ),
    )
    assert report["enrichment"]["status"] == "llm"  # what the endpoint is, the model name says
    assert report["enrichment"]["model"] == llm_server.model
    assert report["judge"]["model"] == "judge-2026-01-01" and report["judge"]["calls"] == 4
    judged = {r.model for r in llm_server.requests if r.schema_name == "justification_judge"}
    assert judged == {"judge-2026-01-01"}
    assert llm_server.calls_for("enrichment") == report["enrichment"]["items"]

    assert report["enrichment"]["cache"] == str(
        tmp_path / "home" / "ab-enrich" / "enrichment-cache.jsonl"
    )

    # a second run takes every enrichment from the cache file: no LLM call
    calls = llm_server.calls_for("enrichment")
    no_judge = run_ab_enrich(
        settings,
        AbCommandOptions(movielens=tmp_path / "ml", judge=False, resamples=200),
    )
    assert no_judge["judge"]["reason"] == "skipped: judge switched off (--no-judge)"
    assert llm_server.calls_for("enrichment") == calls
    assert no_judge["enrichment"]["cache_hits"] == no_judge["enrichment"]["items"]
    assert no_judge["enrichment"]["calls"] == 0
    assert no_judge["retrieval"] == report["retrieval"]
