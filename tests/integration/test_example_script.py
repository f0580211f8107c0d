"""The worked example (`examples/evaluate_policies.sh`) from the archive on: replay a range
to Parquet, counterfactual replay with another policy, evaluate with the HTML report —
on a small archive fixture (the traffic half, `streamrec demo`, is too slow for the suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from recsys.archive import read_archive
from recsys.evaluation.enrich_ab import QUERY_SET_VERSION
from streams.settings import Settings
from streams.topics import Topics
from tests.example_archive import write_example_archive
from tests.movielens_tiny import tiny_ab_report

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "evaluate_policies.sh"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    return subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={
            **clean,
            "STREAMREC": f"{sys.executable} -m cli.app",
            "SKIP_TRAFFIC": "1",
            "OUT": str(tmp_path / "out"),
            "STREAMREC_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(REPO),
            **env,
        },
    )


def test_replay_counterfactual_and_evaluate_from_the_archive(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", topic_prefix="example.")
    archive = write_example_archive(settings)
    since = archive.first_request_at - timedelta(seconds=1)
    until = archive.last_request_at + timedelta(seconds=1)
    ab = tmp_path / "ab.json"
    ab.write_text(json.dumps(tiny_ab_report(tmp_path / "ml")))
    result = _run(tmp_path, SINCE=since.isoformat(), UNTIL=until.isoformat(), AB_REPORT=str(ab))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr

    out = tmp_path / "out"
    # 2. the range: every logged response, nothing else
    table = pq.read_table(out / "responses.parquet")
    assert table.num_rows == archive.requests

    # 3. the counterfactual responses, beside the originals, without any LLM
    topics = Topics(settings)
    cf_root = settings.archive_root / "counterfactual" / "no-llm"
    replayed = [m.value for m in read_archive(cf_root, topics.rec_responses.name)]
    assert len(replayed) == archive.requests
    assert all(r["policy"] == "no-llm" and not r["llm_used"] for r in replayed)

    # 4. the evaluation compares production with the policy; the HTML report is where it says
    report = json.loads((out / "report.json").read_text())
    assert set(report["systems"]) == {"production", "no-llm"}
    production = report["systems"]["production"]["overall"]
    assert production["n"] == archive.requests
    assert production["llm_involvement_rate"] == archive.llm_used / archive.requests
    assert report["systems"]["no-llm"]["overall"]["llm_involvement_rate"] == 0.0
    assert production["n_judged"] > 0  # the users' next actions are in the archive
    html = out / "report.html"
    assert html.read_text().startswith("<!doctype html>")
    # the enrichment A/B it was given sits in the same report
    assert report["enrichment_ab"]["query_set"]["version"] == QUERY_SET_VERSION
    assert "Enrichment A/B: raw vs enriched embeddings" in html.read_text()
    assert "judge skipped: no LLM endpoint configured" in result.stdout
    assert f"The report: {html.resolve()}" in result.stdout
    for step in ("2. replay", "3. counterfactual", "5. evaluate"):
        assert step in result.stdout


def test_without_logged_responses_the_example_says_why(tmp_path: Path) -> None:
    (tmp_path / "home" / "archive").mkdir(parents=True)
    result = _run(tmp_path)
    assert result.returncode == 1
    assert "no logged responses" in result.stderr and "serving worker" in result.stderr
