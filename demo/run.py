"""`make demo`: the whole component on one machine, driven by a synthetic workload.

Starts the embedded stack (Tansu + Postgres), runs every worker of this build as a
child process, publishes a synthetic catalog, user histories, a few poison messages
and a stream of recommendation requests, waits for the workers to catch up, then
prints what happened: messages per topic, dead letters, consumer lag, and — when the
serving worker is part of the build — routes, latencies and LLM involvement.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from demo.enrich_report import demo_llm, enrich_report, read_all
from demo.feedback import report_feedback_archive
from demo.progress import StepsFactory, no_steps
from demo.serving import serve_demo
from demo.showcase import Exchange, pick, print_exchange, print_next
from recsys.records import CatalogChange, LlmInvolvement, RecRequest, RecResponse
from recsys.synthetic import SyntheticWorkload, WorkloadConfig
from stack.embedded import free_port, port_is_free
from stack.stack import Stack
from stack.supervisor import Supervisor
from streams.lag import group_lag, topic_sizes
from streams.producer import RecordProducer
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages
from workers.runtime import available_workers

__all__ = ["DemoOptions", "run_demo"]

log = logging.getLogger(__name__)

#: The demo's attribution window (seconds): its clicks come right after the answers.
DEMO_ATTRIBUTION_S = 10

#: Which input topics each worker consumes (for the lag table).
WORKER_INPUTS: dict[str, tuple[str, ...]] = {
    "enrich": ("catalog_changes",),
    "users": ("user_events",),
    "serve": ("rec_requests",),
    "feedback": ("rec_responses", "user_events"),
    "archive": ("rec_responses", "llm_log", "feedback_examples"),
}


@dataclass(frozen=True)
class DemoOptions:
    """Size of the demo workload."""

    items: int = 400
    users: int = 250
    requests: int = 200
    llm: str = "simulated"
    catch_up_timeout_s: float = 180.0
    #: Request deadline (None: the workload's own, 1.5 s).
    deadline_ms: int | None = None
    #: Requests sent per second.
    rate_per_s: float = 20.0

    @classmethod
    def for_llm(
        cls,
        llm: str,
        *,
        items: int | None = None,
        users: int | None = None,
        requests: int | None = None,
    ) -> DemoOptions:
        """Options for an LLM choice; sizes not given take that choice's defaults.

        With ``local`` (a real 135M model on 2 CPU cores, seconds per call) the workload
        is small and requests get a 30 s deadline, so that the demo shows the model
        at work and still ends within about five minutes.
        """
        if llm == "local":
            return cls(
                items=items or 24,
                users=users or 60,
                requests=requests or 15,
                llm=llm,
                catch_up_timeout_s=420.0,
                deadline_ms=30_000,
                rate_per_s=1.0,
            )
        base = cls()
        return cls(
            items=items or base.items,
            users=users or base.users,
            requests=requests or base.requests,
            llm=llm,
        )


def _inputs(settings: Settings, name: str) -> tuple[str, ...]:
    """A worker's input topics; the archive's include what the settings ask it to keep."""
    inputs = WORKER_INPUTS[name]
    if name == "archive":
        inputs += ("rec_requests",) if settings.archive_requests else ()
        inputs += ("user_events",) if settings.archive_user_events else ()
    return inputs


def _wait_caught_up(
    settings: Settings, topics: Topics, workers: list[str], timeout_s: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    lags: dict[str, int] = {}
    while time.monotonic() < deadline:
        lags = {}
        for name in workers:
            names = [getattr(topics, attr).name for attr in _inputs(settings, name)]
            group = f"{settings.topic_prefix}streamrec-{name}"
            lags[name] = sum(g.lag for g in group_lag(settings, group, names))
        if all(v == 0 for v in lags.values()):
            break
        time.sleep(1.0)
    return lags


def run_demo(
    settings: Settings, options: DemoOptions, console: Console, steps: StepsFactory = no_steps
) -> Settings:
    """Run the demo end to end and print the report; the settings it ran with (its
    topic prefix names what it archived)."""
    started = time.monotonic()
    if settings.embedded_broker and not port_is_free(settings.broker_host, settings.broker_port):
        settings = settings.with_overrides(broker_port=free_port(settings.broker_host))
    settings = settings.with_overrides(
        topic_prefix=settings.topic_prefix or f"demo-{int(time.time())}.",
        # the archive commits once a file rolls: roll soon so the demo catches up
        archive_roll_s=min(settings.archive_roll_s, 5.0),
        # clicks follow answers within a second: close attribution windows soon
        attribution_window_s=min(settings.attribution_window_s, DEMO_ATTRIBUTION_S),
        feedback_allowed_lateness_s=min(settings.feedback_allowed_lateness_s, 2),
        # the user events too: evaluate judges relevance on what users did next whether
        # or not it was shown, and a counterfactual replay rebuilds each user's state
        archive_user_events=True,
    )
    console.rule("[bold]streamrec demo")
    with demo_llm(settings, options.llm) as (settings, llm_server), Stack(settings) as stack:
        s = stack.settings
        topics = Topics(s)
        console.print(
            f"broker {s.kafka_bootstrap} (embedded Tansu, memory) · postgres {s.pg_data_dir}"
        )
        workers = [w for w in s.workers if w in available_workers()]
        supervisor = Supervisor(s, workers, log_dir=str(s.home / "logs" / "demo"))
        supervisor.start()
        console.print(
            f"workers: {', '.join(workers) or '(none in this build)'} — "
            f"logs in {s.home / 'logs' / 'demo'}"
        )
        try:
            workload = SyntheticWorkload(
                WorkloadConfig(n_items=options.items, n_users=options.users)
            )
            with RecordProducer(s) as producer:
                catalog = workload.catalog()
                for change in catalog:
                    producer.publish_catalog_change(change)
                n_events = 0
                for event in workload.events():
                    producer.publish_user_event(event)
                    n_events += 1
                poisoned = Counter[str]()
                for spec in (topics.catalog_changes, topics.user_events, topics.rec_requests):
                    for reason, payload in poison_messages(spec, producer.serde).items():
                        producer.send_raw(spec, "poison", payload)
                        poisoned[reason] += 1
            console.print(
                f"published {len(catalog)} catalog changes, {n_events} user events, "
                f"{sum(poisoned.values())} poison messages"
            )
            lags = _wait_caught_up(s, topics, workers, options.catch_up_timeout_s)
            enrich_report(console, s, topics, workers, llm_server)
            served: list[tuple[RecRequest, RecResponse]] = []
            if "serve" in workers and options.requests:
                served = serve_demo(
                    console,
                    s,
                    topics,
                    workload,
                    options.requests,
                    steps=steps,
                    llm_server=llm_server,
                    rate_per_s=options.rate_per_s,
                    deadline_ms=options.deadline_ms,
                )
                # let attribution windows close, then the feedback and archive catch up
                time.sleep(s.attribution_window_s + s.feedback_allowed_lateness_s + 2)
                lags = _wait_caught_up(s, topics, workers, options.catch_up_timeout_s)
            _report(console, s, topics, lags)
            report_feedback_archive(console, s, topics)
            _showcase(console, s, topics, served, catalog)
        finally:
            codes = supervisor.stop()
            log.info("workers stopped: %s", codes)
    console.print(f"demo finished in {time.monotonic() - started:.1f}s")
    if "archive" in workers:
        print_next(console, s)
    return s


def _showcase(
    console: Console,
    settings: Settings,
    topics: Topics,
    served: list[tuple[RecRequest, RecResponse]],
    catalog: list[CatalogChange],
) -> None:
    """A few of this run's responses, item by item."""
    if not served:
        return
    logs: dict[str, list[LlmInvolvement]] = defaultdict(list)
    for record in read_all(settings, topics.llm_log.name, LlmInvolvement):
        logs[record.request_id].append(record)
    chosen = pick([Exchange(q, r, tuple(logs.get(q.request_id, ()))) for q, r in served])
    console.rule(f"[bold]{len(chosen)} responses of this run, as a product gets them")
    by_id = {c.item_id: c for c in catalog}
    for n, (title, exchange) in enumerate(chosen.items(), start=1):
        print_exchange(console, n, title, exchange, by_id)


def _report(console: Console, settings: Settings, topics: Topics, lags: dict[str, int]) -> None:
    sizes = topic_sizes(settings, [t.name for t in topics])
    table = Table(title="messages per topic")
    table.add_column("topic")
    table.add_column("messages", justify="right")
    table.add_column("dead letters", justify="right")
    for spec in topics.data_topics():
        dlq = sizes.get(spec.dlq.name, 0) if spec.dlq else 0
        table.add_row(spec.base, str(sizes.get(spec.name, 0)), str(dlq))
    console.print(table)
    if lags:
        lag_table = Table(title="consumer lag after the run")
        lag_table.add_column("worker")
        lag_table.add_column("lag", justify="right")
        for name, lag in lags.items():
            lag_table.add_row(name, str(lag))
        console.print(lag_table)
