"""The shared health snapshot is rewritten by the heartbeat and by a check that changed,
not by every unchanged check (the observer ticks each second on the event loop)."""

from __future__ import annotations

import json
from pathlib import Path

from streams.health import Health


def test_an_unchanged_check_does_not_rewrite_the_snapshot(tmp_path: Path) -> None:
    health = Health("serve")
    health.share_in(str(tmp_path))
    health.beat()
    path = tmp_path / f"health_{health.pid}.json"
    health.set("partitions", True, "2 partition(s)")
    first = path.stat().st_ino
    health.set("partitions", True, "2 partition(s)")  # the same: no write
    assert path.stat().st_ino == first
    health.set("partitions", False, "no partitions assigned (yet)")  # changed: written
    changed = path.stat().st_ino
    assert changed != first
    assert json.loads(path.read_text())["checks"]["partitions"]["ok"] is False
    health.beat()  # the heartbeat always writes (``at`` moves)
    assert path.stat().st_ino != changed
