"""What an idle `streamrec up` stack costs: CPU seconds per minute of every process, no load.

    python -m benchmarks idle_stack [--minutes 3] [--set NAME=VALUE ...]

Every consumer of the stack polls the broker whether or not anything arrives (on Tansu a
fetch is answered when its ``fetch.wait.max.ms`` expires), the supervisor samples the
topics' sizes, groups heartbeat: this is the floor of what streamrec adds to the broker's
load before the first message. Set-up as the soak (:mod:`benchmarks.soak`): an embedded
Postgres owned by this script with the migrations applied (no data: the workers start on
an empty world), ``streamrec up`` as a child with every worker, all workers ready, a
``--settle-s`` pause, then the timed minutes, sampled per process by
:class:`benchmarks.soak_procs.ProcessMeter`.

One JSON line per minute (``cpu_s``, ``rss_mb`` by role), then
``{"minutes", "cpu_s_per_min": {role: mean}, "broker_cpu_s_by_minute", "loadavg"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.soak import Minute, free_port_range, parse_sets, wait_ready
from benchmarks.soak_procs import ProcessMeter
from recsys import db
from stack.embedded import EmbeddedPostgres, free_port
from stack.supervisor import settings_env
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=3)
    p.add_argument("--settle-s", type=float, default=30.0)
    p.add_argument("--set", action="append", default=[], help="NAME=VALUE setting for up")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="streamrec-idle-"))
    pg = EmbeddedPostgres(home / "pgdata")
    dsn = pg.start()
    up: subprocess.Popen[bytes] | None = None
    minutes = [Minute() for _ in range(args.minutes)]
    load_before = os.getloadavg()
    try:
        env_settings = Settings(
            home=home,
            database_url=dsn,
            broker_port=free_port(),
            metrics_port=free_port_range(6),
            dashboard_port=free_port(),
            **parse_sets(args.set),
        )
        settings = env_settings.with_overrides(
            bootstrap_servers=f"127.0.0.1:{env_settings.broker_port}"
        )
        db.apply_migrations(dsn)
        up = subprocess.Popen(
            [sys.executable, "-m", "cli.app", "up"],
            cwd=REPO,
            env=settings_env(env_settings),
            stdout=(home / "up.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_ready(settings, up)
        start_at = time.time() + args.settle_s
        print(f"idle_stack: ready; timed minutes from {start_at:.0f}", file=sys.stderr)
        meter = ProcessMeter(up.pid, pg_data=home / "pgdata", extra={})
        meter.per_minute(start_at, minutes)
    finally:
        if up is not None and up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(90)
            except subprocess.TimeoutExpired:
                up.kill()
        pg.destroy()
    report(minutes, args, load_before)


def report(minutes: list[Minute], args: Any, load_before: tuple[float, ...]) -> None:
    for i, m in enumerate(minutes):
        print(json.dumps({"minute": i + 1, "cpu_s": m.cpu_s, "rss_mb": m.rss_mb}), flush=True)
    roles = sorted({r for m in minutes for r in m.cpu_s})
    mean = {r: round(sum(m.cpu_s.get(r, 0.0) for m in minutes) / len(minutes), 2) for r in roles}
    print(
        json.dumps(
            {
                "minutes": len(minutes),
                "cpu_s_per_min": mean,
                "broker_cpu_s_by_minute": [m.cpu_s.get("broker", 0.0) for m in minutes],
                "settings_set": args.set,
                "loadavg_before": [round(x, 2) for x in load_before],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
