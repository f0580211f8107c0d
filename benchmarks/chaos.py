"""The fault suite, long form: `streamrec up` with all five workers under steady load,
while it is hurt in every way issue 14 names; then the data is checked against an
offline recomputation.

    python -m benchmarks chaos [--phase1-s 180] [--phase2-s 120] [--seed 14] [--keep]

1. ``up`` on a fresh home (embedded broker and Postgres, serve with two replicas);
   catalog changes, user events (with re-sent duplicates) and requests flow
   (:class:`testkit.chaos_load.ChaosLoad`), a recorder reads every response and dead
   letter as it appears;
2. phase 1: each worker SIGKILLed twice at random moments, Postgres frozen (SIGSTOP of
   the postmaster and every backend) for 30 s, every kind of poison
   (:func:`testkit.poison.poison_catalogue`) published to every topic a worker reads;
3. the load pauses, everything drains, ``up`` is stopped and started again on the same
   home (the embedded broker comes back empty: a new incarnation of every topic);
4. phase 2: each worker SIGKILLed again (at least three kills each in all), the
   postmaster SIGKILLed once (``up`` starts it again), poison once more;
5. drain, then :func:`testkit.chaos_oracle.check_all`: user state exact, every event
   stored once, every item at its last version, every request answered (repeats counted
   as redeliveries), every poison message dead-lettered once per consuming group, no
   worker left crash-looping.

``restart_to_first_answer_s``: for each SIGKILL of a serve process, the time until every
partition of rec.requests has answered a request sent after the kill; the worst of them.
Last line: ``{"kills", "lost", "doubled", "dead_lettered", "answered", "requests",
"restart_to_first_answer_s"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from stack.embedded import EmbeddedPostgres, free_port
from streams.lag import group_lag
from streams.settings import Settings
from streams.topics import Topics
from testkit.chaos_load import ChaosLoad, Recorder, wait_for
from testkit.chaos_oracle import check_all
from testkit.poison import poison_catalogue
from testkit.up_process import UpProcess
from workers.inventory import consumer_group, worker_inputs

WORKERS = ("enrich", "users", "serve", "feedback", "archive")
#: Settings of the run (the same for `up` and for the offline recomputation).
OVERRIDES: dict[str, Any] = {
    "restart_healthy_after_s": 20.0,  # kills come faster than the default 60 s
    "attribution_window_s": 5,
    "feedback_allowed_lateness_s": 1,
    "archive_roll_s": 5.0,
    "archive_user_events": True,
}


def log(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Run:
    """One chaos run: the stack, the load, the faults and what they did."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.home = Path(tempfile.mkdtemp(prefix="streamrec-chaos-"))
        self.port = free_port()
        self.settings = Settings(
            home=self.home, bootstrap_servers=f"127.0.0.1:{self.port}", **OVERRIDES
        )
        self.env = {
            f"STREAMREC_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in OVERRIDES.items()
        }
        self.load = ChaosLoad(self.settings, seed=args.seed)
        self.up: UpProcess | None = None
        self.recorders: list[Recorder] = []
        self.kills: list[tuple[str, float, int]] = []  # (worker, monotonic, incarnation)
        self.incarnation = 1
        #: Postgres outages (monotonic start, end): serve kills inside them are not
        #: restart measurements.
        self.pg_outages: list[tuple[float, float]] = []

    # ---- the stack ------------------------------------------------------------------------
    def start_up(self) -> float:
        started = time.monotonic()
        self.up = UpProcess(self.home, self.port, "--workers", ",".join(WORKERS), **self.env)
        self.up.wait_for("Ctrl-C", 300)
        recorder = Recorder(self.settings, self.incarnation).start()
        self.recorders.append(recorder)
        return started

    def stop_up(self) -> int:
        assert self.up is not None
        self.up.proc.send_signal(signal.SIGTERM)
        code = self.up.proc.wait(180)
        self.up.drain(2)
        self.recorders[-1].stop()
        return code

    def workers_alive(self) -> dict[str, list[psutil.Process]]:
        assert self.up is not None
        out: dict[str, list[psutil.Process]] = {w: [] for w in WORKERS}
        for proc in self.up.descendants():
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if "worker" in cmd and cmd[-1] in out:
                out[cmd[-1]].append(proc)
        return out

    def postmaster(self) -> psutil.Process:
        pid = EmbeddedPostgres(self.settings.pg_data_dir).pid
        assert pid is not None, "no postmaster running"
        return psutil.Process(pid)

    # ---- faults ---------------------------------------------------------------------------
    def kill_worker(self, worker: str) -> bool:
        """SIGKILL one process of ``worker`` that has run for 8 s at least."""
        candidates = [
            p for p in self.workers_alive()[worker] if time.time() - p.create_time() >= 8.0
        ]
        if not candidates:
            return False
        victim = self.rng.choice(candidates)
        victim.send_signal(signal.SIGKILL)
        self.kills.append((worker, time.monotonic(), self.incarnation))
        log(f"SIGKILL {worker} (pid {victim.pid})")
        return True

    def freeze_postgres(self, seconds: float = 30.0) -> None:
        master = self.postmaster()
        procs = [master, *master.children(recursive=True)]
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        log(f"Postgres frozen (SIGSTOP, {len(procs)} processes) for {seconds:.0f}s")
        frozen = time.monotonic()
        time.sleep(seconds)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGCONT)
        self.pg_outages.append((frozen, time.monotonic()))
        log("Postgres thawed (SIGCONT)")

    def kill_postgres(self) -> None:
        master = self.postmaster()
        master.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        log(f"SIGKILL postmaster (pid {master.pid})")
        assert self.up is not None
        self.up.wait_for("embedded Postgres is back", 180)
        self.pg_outages.append((killed, time.monotonic()))
        log(f"up started Postgres again after {time.monotonic() - killed:.1f}s")

    def poison_round(self, at: list[float]) -> list[tuple[float, Callable[[], Any]]]:
        """Each kind of poison to each topic a worker reads, at the given moments."""
        topics = Topics(self.settings)
        read = {spec.name for specs in worker_inputs(self.settings).values() for spec in specs}
        actions: list[tuple[float, Callable[[], Any]]] = []
        for spec in topics.data_topics():
            if spec.name not in read:
                continue
            for poison in poison_catalogue(spec, self.load.serde, seed=self.incarnation):
                actions.append(
                    (self.rng.choice(at), partial(self.load.publish_poison, spec, poison))
                )
        return actions

    # ---- phases ---------------------------------------------------------------------------
    def phase(self, seconds: float, kills_each: int, postgres: str) -> None:
        """Run the load for ``seconds`` with faults at random moments (the Postgres fault
        runs beside the others: workers die while the database is away too)."""
        start = time.monotonic()
        pg_at = self.rng.uniform(0.25, 0.5) * seconds
        pg_window = (pg_at - 20, pg_at + (30 if postgres == "freeze" else 10) + 25)
        plan: list[tuple[float, Callable[[], Any]]] = []
        for worker in WORKERS:
            times: list[float] = []
            while len(times) < kills_each:
                t = self.rng.uniform(0.08, 0.85) * seconds
                # serve's restart is measured: not while Postgres is away
                if worker == "serve" and pg_window[0] <= t <= pg_window[1]:
                    continue
                if all(abs(t - other) >= 25 for other in times):
                    times.append(t)
            plan += [(t, partial(self._kill_soon, worker)) for t in times]
        moments = [seconds * f for f in (0.1, 0.2, 0.3, 0.45, 0.6, 0.7, 0.8)]
        plan += self.poison_round(moments)
        fault = self.freeze_postgres if postgres == "freeze" else self.kill_postgres
        plan.append((pg_at, lambda: threading.Thread(target=fault, daemon=True).start()))
        for when, action in sorted(plan, key=lambda a: a[0]):
            delay = start + when - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            action()
        rest = start + seconds - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def _kill_soon(self, worker: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.kill_worker(worker):
                return
            time.sleep(2)
        log(f"no {worker} process to kill for 60 s")

    def drained(self) -> bool:
        recorder = self.recorders[-1]
        unanswered = [rid for rid in self.load.requests if rid not in self._answers()]
        if unanswered or recorder.quiet_for() < 3:
            return False
        for worker, specs in worker_inputs(self.settings).items():
            group = consumer_group(self.settings, worker)
            lags = group_lag(self.settings, group, [s.name for s in specs])
            if any(lag.lag for lag in lags):
                return False
        return True

    def quiesce(self, timeout_s: float) -> bool:
        self.load.pause()
        return wait_for(self.drained, timeout_s, "the stack to drain", poll_s=2)

    def _answers(self) -> dict[str, list[float]]:
        merged: dict[str, list[float]] = {}
        for recorder in self.recorders:
            for rid, times in list(recorder.answers.items()):
                merged.setdefault(rid, []).extend(times)
        return merged

    def restart_to_first_answer(self) -> list[float]:
        """Per serve kill: until every request partition answered a later request (kills
        within 15 s of a Postgres outage measure the outage, not the restart: left out)."""
        answers = self._answers()
        partitions = range(self.settings.user_partitions)
        out = []
        for worker, killed_at, incarnation in self.kills:
            if worker != "serve" or any(
                start - 15 <= killed_at <= end + 15 for start, end in self.pg_outages
            ):
                continue
            worst = 0.0
            for p in partitions:
                firsts = [
                    min(answers[rid])
                    for rid, where in self.load.requests.items()
                    if where.partition == p
                    and where.incarnation == incarnation
                    and where.sent_at >= killed_at
                    and rid in answers
                ]
                if firsts:
                    worst = max(worst, min(firsts) - killed_at)
            out.append(round(worst, 2))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase1-s", type=float, default=180.0)
    parser.add_argument("--phase2-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--keep", action="store_true", help="Keep the home directory.")
    args = parser.parse_args()
    run = Run(args)
    crash_loops: list[str] = []
    try:
        log(f"home {run.home}, broker port {run.port}")
        run.start_up()
        run.load.seed_catalog()
        run.load.start()
        wait_for(lambda: bool(run._answers()), 300, "the first answer")
        log("phase 1")
        run.phase(args.phase1_s, kills_each=2, postgres="freeze")
        drained1 = run.quiesce(600)
        log(f"phase 1 drained: {drained1}; restarting up on the same home")
        code = run.stop_up()
        log(f"up stopped with {code}")
        run.incarnation += 1
        restarted = run.start_up()
        run.load.new_incarnation(run.settings)
        run.load.resume()
        first = len(run.load.requests)
        wait_for(
            lambda: any(rid in run._answers() for rid in list(run.load.requests)[first:]),
            300,
            "an answer after the restart",
        )
        up_restart_s = time.monotonic() - restarted
        log(f"phase 2 (up restart to first answer {up_restart_s:.1f}s)")
        run.phase(args.phase2_s, kills_each=1, postgres="kill")
        drained2 = run.quiesce(600)
        run.load.stop()
        alive = run.workers_alive()
        crash_loops = [w for w, procs in alive.items() if not procs]
        assert run.up is not None
        output = run.up.drain(1)
        if "times in a row" in output or run.up.proc.poll() is not None:
            crash_loops.append("up gave up")
        letters = [(r.incarnation, letter) for r in run.recorders for letter in r.letters]
        consumers: dict[str, list[tuple[str, str]]] = {}
        for worker, specs in worker_inputs(run.settings).items():
            for spec in specs:
                consumers.setdefault(spec.name, []).append(
                    (worker, consumer_group(run.settings, worker))
                )
        dsn = EmbeddedPostgres(run.settings.pg_data_dir).dsn()
        verdict = check_all(dsn, run.load, run.settings, run._answers(), letters, consumers)
        code = run.stop_up()
    finally:
        if run.up is not None and run.up.proc.poll() is None:
            run.up.kill()
        if not args.keep:
            shutil.rmtree(run.home, ignore_errors=True)
    restart = run.restart_to_first_answer()
    kills = len(run.kills)
    per_worker = {w: sum(1 for k in run.kills if k[0] == w) for w in WORKERS}
    detail = {
        "kills_per_worker": per_worker,
        "drained": [drained1, drained2],
        "lost_by_check": dict(verdict.lost),
        "doubled_by_check": dict(verdict.doubled),
        "state_differs": verdict.state_differs,
        "redeliveries": dict(verdict.redeliveries),
        "poison_published": len(run.load.poisons),
        "events": len(run.load.events),
        "items": len(run.load.catalog),
        "crash_loops": crash_loops,
        "restart_to_first_answer_per_serve_kill_s": restart,
        "up_restart_to_first_answer_s": round(up_restart_s, 1),
        "postgres_outages_s": [round(b - a, 1) for a, b in run.pg_outages],
        "delivery_errors": run.load.delivery_errors[:5],
        "examples": verdict.examples,
        "final_up_exit": code,
        "load_avg": os.getloadavg(),
    }
    print(json.dumps(detail, sort_keys=True), flush=True)
    # the keys, in the order
    result = {
        "kills": kills,
        "lost": sum(verdict.lost.values()) + verdict.state_differs,
        "doubled": sum(verdict.doubled.values()),
        "dead_lettered": verdict.dead_lettered,
        "answered": verdict.answered,
        "requests": verdict.requests,
        "restart_to_first_answer_s": max(restart) if restart else None,
    }
    print(json.dumps(result), flush=True)
    if crash_loops or result["lost"] or result["doubled"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
