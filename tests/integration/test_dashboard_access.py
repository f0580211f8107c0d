"""Who may look at the dashboard, and `doctor` on a worker that cannot start."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dashboard.server import Dashboard
from recsys.exceptions import ConfigurationError
from stack.embedded import EmbeddedBroker, free_port
from stack.supervisor import settings_env
from streams.settings import Settings
from tests.helpers import wait_until
from tests.integration.observed_stack import REPO, start_up, stop_up, wait_ready

pytestmark = pytest.mark.integration


def _status(request: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_non_local_dashboard_needs_a_token_and_refuses_cross_site_posts(
    kafka_settings: Settings,
) -> None:
    with pytest.raises(ConfigurationError, match="without credentials"):
        Dashboard(kafka_settings, host="0.0.0.0", port=0)
    settings = kafka_settings.with_overrides(dashboard_token="s3cret-token-value")
    board = Dashboard(settings, host="0.0.0.0", port=free_port()).start()
    base = f"http://127.0.0.1:{board.port}"
    try:
        assert _status(urllib.request.Request(base + "/")) == 401
        assert (
            _status(urllib.request.Request(base + "/", headers={"Authorization": "Bearer x"}))
            == 401
        )
        auth = {"Authorization": "Bearer s3cret-token-value"}
        assert _status(urllib.request.Request(base + "/dlq", headers=auth)) == 200
        # a form posted from another site, even with the token's cookie, is refused
        form = f"user_id=u1&csrf={board.access.csrf_token}".encode()
        evil = urllib.request.Request(
            base + "/try",
            data=form,
            headers=auth
            | {
                "Origin": "http://evil.example",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            method="POST",
        )
        assert _status(evil) == 403
        no_csrf = urllib.request.Request(
            base + "/try",
            data=b"user_id=u1",
            headers=auth | {"Origin": f"http://127.0.0.1:{board.port}"},
            method="POST",
        )
        assert _status(no_csrf) == 403
        page = (
            urllib.request.urlopen(urllib.request.Request(base + "/", headers=auth), timeout=10)
            .read()
            .decode()
        )
        assert "s3cret-token-value" not in page
    finally:
        board.stop()


@pytest.mark.slow
def test_doctor_reports_a_worker_that_fails_at_start_as_down(
    tmp_path: Path, broker: EmbeddedBroker, database: str
) -> None:
    # enrich cannot load a model that does not exist; users needs no model
    up = start_up(
        tmp_path,
        broker.bootstrap,
        database,
        workers=("enrich", "users"),
        embedding_model="no-such-model-anywhere",
        # keep restarting it (by default `up` gives up after 5 failures in a row and stops)
        restart_max_failures=1000,
    )
    try:
        wait_ready(up, ("users",))

        def doctor() -> dict:  # type: ignore[type-arg]
            result = subprocess.run(
                [sys.executable, "-m", "cli.app", "doctor", "--json"],
                cwd=REPO,
                env=settings_env(up.settings),
                capture_output=True,
                text=True,
                timeout=120,
            )
            report = json.loads(result.stdout)
            report["exit"] = result.returncode
            return report

        def crash_looping() -> dict | None:  # type: ignore[type-arg]
            report = doctor()
            states = {w["name"]: w for w in report["workers"]}
            return report if states["enrich"]["state"] in ("crash-looping", "failed") else None

        report = wait_until(crash_looping, timeout_s=180, interval_s=2, what="enrich crash-looping")
        states = {w["name"]: w for w in report["workers"]}
        assert report["exit"] == 1
        assert states["enrich"]["restarts"] >= 2
        assert states["users"]["state"] == "ready"
        log = (up.settings.home / "logs" / "enrich.log").read_text()
        assert "no-such-model-anywhere" in log
    finally:
        stop_up(up)
