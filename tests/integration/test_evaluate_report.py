"""`streamrec evaluate` on archives as a user has them: with relevance from the feedback
examples only (the archive worker's default), no metric that is constant by
construction is shown; the HTML report carries intervals and fits a 1280-px window
(checked in headless Chromium, with a screenshot under the test's temp dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.browser import chromium
from tests.example_archive import write_example_archive
from tests.movielens_tiny import tiny_ab_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PREFIX = "example."


def streamrec(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env.update(STREAMREC_HOME=str(home), STREAMREC_TOPIC_PREFIX=PREFIX)
    return subprocess.run(
        [sys.executable, "-m", "cli.app", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )


def test_logged_relevance_shows_no_metric_that_is_constant_by_construction(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    write_example_archive(Settings(home=home, topic_prefix=PREFIX), user_events=False)
    out = tmp_path / "report.json"
    result = streamrec(
        home, "evaluate", "--json", str(out), "--html", str(tmp_path / "report.html")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["relevance_source"] == "feedback.examples"
    production = report["systems"]["production"]
    assert production["overall"]["n_judged"] > 0
    assert set(production["omitted"]) == {"recall@10", "hit_rate@10"}
    slices = [production["overall"]] + [
        m for key, groups in production.items() if key.startswith("by_") for m in groups.values()
    ]
    for metrics in slices:
        assert "recall@10" not in metrics and "hit_rate@10" not in metrics
        assert metrics["ndcg@10"] is None or 0.0 < metrics["ndcg@10"] <= 1.0
    # the terminal: no recall or hit-rate column, the reason and the meaning instead
    table = result.stdout[: result.stdout.index("LLM log by use case")]
    assert "recall@10" not in table.replace("left out: recall@10", "")
    assert "hit_rate@10" not in table.replace("left out: hit_rate@10", "")
    assert "left out: recall@10, 1 for every judged request by construction" in table
    assert "only shown items can be relevant" in table
    # and the page
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<th>recall@10</th>" not in page and "<th>hit_rate@10</th>" not in page
    assert "Left out: recall@10" in page


def test_the_html_report_has_intervals_and_fits_a_1280px_window(tmp_path: Path) -> None:
    """The widest report a user gets: relevance from events (every metric shown), a
    counterfactual policy beside production, item categories, and an enrichment A/B."""
    home = tmp_path / "home"
    settings = Settings(home=home, topic_prefix=PREFIX)
    write_example_archive(settings)
    replay = streamrec(home, "replay", "rec.requests", "--source", "archive", "--policy", "no-llm")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    ab = tmp_path / "ab.json"
    ab.write_text(json.dumps(tiny_ab_report(tmp_path / "ml")))
    categories = tmp_path / "categories.json"
    categories.write_text(json.dumps({f"item-{i:05d}": [f"c{i % 7}"] for i in range(60)}))
    html = tmp_path / "report.html"
    result = streamrec(
        home,
        "evaluate",
        "--policy",
        "no-llm",
        "--categories",
        str(categories),
        "--ab",
        str(ab),
        "--html",
        str(html),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = html.read_text(encoding="utf-8")
    assert page.count("error bars: 95% bootstrap interval") >= 4
    assert "ips 95% CI" in page
    with chromium() as driver:
        driver.set_window_size(1280, 1000)
        driver.get(html.as_uri())
        width = driver.execute_script("return window.innerWidth")
        scroll = driver.execute_script(
            "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        )
        boxes = driver.execute_script(
            "return Array.from(document.querySelectorAll('.wrap'))"
            ".filter(e => e.scrollWidth > e.clientWidth).length"
        )
        total = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(total, 1000), 12000))
        shot = tmp_path / "evaluation-report-1280.png"
        assert driver.save_screenshot(str(shot))
    assert width <= 1280
    assert scroll <= 1280, f"the page scrolls sideways: {scroll} px wide in a {width} px window"
    assert boxes == 0, f"{boxes} table(s) need their own horizontal scroll at 1280 px"
    assert shot.stat().st_size > 10_000
