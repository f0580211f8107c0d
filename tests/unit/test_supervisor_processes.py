"""`streamrec up` runs serve_processes serve processes, one of every other worker."""

from __future__ import annotations

from pathlib import Path

from stack.supervisor import Supervisor, process_names
from streams.settings import Settings


def test_serve_scales_out_and_the_other_workers_do_not(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, serve_processes=3)
    sup = Supervisor(settings, ["users", "serve", "feedback"])
    assert {n: c.worker for n, c in sup.children.items()} == {
        "users": "users",
        "serve": "serve",
        "serve-2": "serve",
        "serve-3": "serve",
        "feedback": "feedback",
    }
    # the processes of one worker share its metrics directory (their counters add up)
    assert len({sup.metrics_dir(c.worker) for c in sup.children.values()}) == 3
    assert process_names("serve", 1) == ["serve"]
