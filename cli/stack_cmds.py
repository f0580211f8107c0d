"""Commands that run or inspect a deployment: up, worker, doctor, migrate, topics, settings."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import (
    BrokerOpt,
    BrokerPortOpt,
    DatabaseOpt,
    LogFormatOpt,
    console,
    err_console,
    load,
)
from recsys.exceptions import ConfigurationError

__all__ = [
    "dashboard",
    "doctor",
    "migrate",
    "settings_cmd",
    "topics_create",
    "topics_list",
    "up",
    "worker",
]


def up(
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    broker_port: BrokerPortOpt = None,
    workers: Annotated[
        str | None, typer.Option("--workers", help="Comma-separated workers to run.")
    ] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="Only start broker + Postgres.")
    ] = False,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="Do not serve the web dashboard.")
    ] = False,
    log_format: LogFormatOpt = None,
    llm: Annotated[
        str | None,
        typer.Option(
            "--llm",
            help="local: start the embedded local LLM (SmolLM2-135M, grammar-constrained) "
            "and use it; endpoint: the configured STREAMREC_LLM_BASE_URL (the default).",
        ),
    ] = None,
) -> None:
    """Start the embedded broker and Postgres (unless external ones are given), apply
    migrations, create topics, run the workers (each with metrics and health endpoints)
    and serve the dashboard, in the foreground until Ctrl-C.

    Crashed workers, and a dead embedded broker or Postgres, are restarted; one that keeps
    failing stops the stack with a message and exit status 2 (docs/operations.md)."""
    from stack.stack import Stack
    from stack.supervisor import Supervisor
    from stack.supervisor_http import supervisor_routes
    from streams.ops_http import OpsServer
    from workers.runtime import available_workers

    if llm not in (None, "local", "endpoint"):
        raise ConfigurationError(f"--llm must be local or endpoint, not {llm!r}")
    settings = load(
        "up",
        to_file=True,
        bootstrap_servers=broker,
        database_url=database,
        broker_port=broker_port,
        workers=workers,
        log_format=log_format,
        llm_local=True if llm == "local" else None,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with Stack(settings) as stack:
        s = stack.settings
        kind = "embedded Tansu, topics in memory" if stack.broker else "external"
        console.print(f"[bold]broker[/]   {s.kafka_bootstrap} ({kind})")
        where = "embedded, data in " + str(s.pg_data_dir) if stack.postgres else "external"
        console.print(f"[bold]postgres[/] {where}")
        console.print(f"[bold]schema[/]   {len(stack.applied)} migration(s) applied now")
        created = sum(1 for v in stack.topic_report.values() if v == "created")
        console.print(
            f"[bold]topics[/]   {created} created, {len(stack.topic_report) - created} existing"
        )
        if stack.llm is not None:
            console.print(
                f"[bold]llm[/]      {stack.llm.model} at {stack.llm.base_url} (embedded, "
                f"{s.prompt_style} prompts, log {stack.llm.log_path})"
            )
        elif s.llm_enabled:
            console.print(f"[bold]llm[/]      {s.llm_model} at {s.llm_base_url}")
        else:
            console.print("[bold]llm[/]      off (no endpoint; `--llm local` starts one)")
        if no_workers:
            console.print("running without workers; Ctrl-C to stop")
            stop.wait()
            return
        present = available_workers()
        for name in (w for w in s.workers if w not in present):
            err_console.print(
                f"[yellow]warning:[/] worker {name} is not part of this build; skipped"
            )
        supervisor = Supervisor(
            s, [w for w in s.workers if w in present], log_dir=None, stack=stack, replicas=True
        )
        endpoint = None
        if (port := s.ops_port("supervisor")) is not None:
            endpoint = OpsServer(
                s.metrics_host, port, supervisor_routes(supervisor), name="supervisor"
            ).start()
        supervisor.start()
        board = None if no_dashboard else _start_dashboard(s, supervisor)
        console.print(f"[bold]logs[/]     {s.home / 'logs'}/<worker>.log")
        if s.metrics_port:
            console.print(
                f"[bold]metrics[/]  http://{s.metrics_host}:{s.metrics_port}-"
                f"{s.metrics_port + 5}/metrics (health: /health/ready)"
            )
        if board is not None:
            console.print(f"[bold]dashboard[/] {board.url}")
        console.print(f"[bold]workers[/]  {', '.join(supervisor.pids())} — Ctrl-C to stop")
        try:
            supervisor.watch(until=stop)
        finally:
            # the dashboard first: its scrapes and consumers must end while the broker
            # and the workers they ask are still there
            if board is not None:
                board.stop()
            codes = supervisor.stop()
            if endpoint is not None:
                endpoint.stop()
            restarted = {n: r for n, r in supervisor.restarts().items() if r}
            console.print(
                f"stopped workers: {codes}" + (f"; restarts: {restarted}" if restarted else "")
            )


def _start_dashboard(settings: Any, supervisor: Any) -> Any:
    """The dashboard of this `up` (it reads the supervisor's state directly)."""
    from dashboard.server import Dashboard

    return Dashboard(settings, supervisor_status=supervisor.status).start()


def worker(
    name: Annotated[str, typer.Argument(help="enrich, users, serve, feedback, archive")],
    log_format: LogFormatOpt = None,
) -> None:
    """Run one worker in the foreground (what `up` starts for each worker), with its
    metrics and health endpoints and its log file under <home>/logs/."""
    import logging

    from recsys.exceptions import StreamrecError
    from workers.runtime import run_worker

    settings = load(name, to_file=True, log_format=log_format)
    try:
        run_worker(name, settings)
    except StreamrecError as exc:  # in the worker's log file too, not only on stderr
        logging.getLogger("streamrec").error("%s cannot run: %s", name, exc)
        raise


def dashboard(
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8470).")] = None,
    log_format: LogFormatOpt = None,
) -> None:
    """Serve the web dashboard for an existing deployment (its broker and database),
    in the foreground until Ctrl-C. Off 127.0.0.1 it needs STREAMREC_DASHBOARD_TOKEN or
    STREAMREC_DASHBOARD_PASSWORD."""
    from dashboard.server import Dashboard
    from stack.embedded import running_postgres_dsn

    settings = load(
        "dashboard",
        to_file=True,
        bootstrap_servers=broker,
        database_url=database,
        dashboard_host=host,
        dashboard_port=port,
        log_format=log_format,
    )
    if settings.database_url is None and (dsn := running_postgres_dsn(settings)) is not None:
        settings = settings.with_overrides(database_url=dsn)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    board = Dashboard(settings).start()
    console.print(f"[bold]dashboard[/] {board.url} — Ctrl-C to stop")
    try:
        stop.wait()
    finally:
        board.stop()


def doctor(
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (secrets masked), whether each capability is
    on — and if not, exactly why —, how close a running embedded broker is to its measured
    limit, and each worker's state, restarts, lag and dead letters. Exits 1 when the broker
    or database is unreachable or a worker is down, not ready or crash-looping."""
    from stack.broker_load import broker_load
    from stack.embedded import running_postgres_dsn
    from stack.local_llm.wiring import local_llm_capability
    from workers.capabilities import Capability, check_capabilities, worker_reports

    settings = load(bootstrap_servers=broker, database_url=database)
    if settings.database_url is None and (dsn := running_postgres_dsn(settings)) is not None:
        settings = settings.with_overrides(database_url=dsn)
    caps = check_capabilities(settings)
    at = next((i + 1 for i, c in enumerate(caps) if c.name == "LLM endpoint"), len(caps))
    caps.insert(at, local_llm_capability(settings))
    if (usage := broker_load(settings)) is not None:
        caps.append(
            Capability("embedded broker", "warn" if usage.near_limit else "on", usage.describe())
        )
    broker_ok = not any(c.status == "error" and c.name == "broker" for c in caps)
    workers = worker_reports(settings, kafka=broker_ok)
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "settings": settings.describe(),
                    "capabilities": [c.__dict__ for c in caps],
                    "workers": [w.__dict__ for w in workers],
                }
            )
        )
    else:
        table = Table(title="effective settings", show_lines=False)
        table.add_column("setting")
        table.add_column("value")
        for key, value in settings.describe().items():
            table.add_row(f"STREAMREC_{key.upper()}", value)
        console.print(table)
        caps_table = Table(title="capabilities")
        for col in ("capability", "status", "detail"):
            caps_table.add_column(col)
        colours = {"on": "green", "off": "yellow", "warn": "yellow", "error": "red"}
        for cap in caps:
            caps_table.add_row(cap.name, f"[{colours[cap.status]}]{cap.status}[/]", cap.detail)
        console.print(caps_table)
        if workers:
            console.print(_workers_table(workers))
    if any(c.status == "error" and c.name in ("broker", "database") for c in caps):
        raise typer.Exit(1)
    if any(not w.healthy for w in workers):
        raise typer.Exit(1)


def _workers_table(workers: list[Any]) -> Table:
    table = Table(title="workers")
    for col in ("worker", "state", "pid", "restarts", "lag", "dead letters", "detail"):
        table.add_column(col)
    colours = {"ready": "green", "not ready": "yellow"}

    def num(value: int | None) -> str:
        return "-" if value is None else str(value)

    for w in workers:
        colour = colours.get(w.state, "red")
        table.add_row(
            w.name,
            f"[{colour}]{w.state}[/]",
            num(w.pid),
            num(w.restarts),
            num(w.lag),
            num(w.dead_letters),
            w.detail,
        )
    return table


def migrate(database: DatabaseOpt = None) -> None:
    """Apply the numbered SQL migrations that are missing (idempotent)."""
    from jobs.database import open_database
    from recsys import db

    settings = load(database_url=database)
    before = db.discover_migrations()
    dsn, release = open_database(settings, database, migrate=False)
    try:
        applied = db.apply_migrations(dsn)
    finally:
        release()
    for m in applied:
        console.print(f"applied {m.path.name}")
    console.print(f"{len(applied)} applied now, {len(before) - len(applied)} already applied")


def topics_create(broker: BrokerOpt = None) -> None:
    """Create every topic of the catalogue that is missing, then check co-partitioning."""
    from streams import admin

    settings = load(bootstrap_servers=broker)
    report = admin.ensure_topics(settings)
    for name, state in sorted(report.items()):
        console.print(f"{state:8} {name}")


def topics_list(broker: BrokerOpt = None) -> None:
    """List the catalogue with partition counts as the broker reports them."""
    from streams import admin
    from streams.topics import Topics

    settings = load(bootstrap_servers=broker)
    topics = list(Topics(settings))
    states = {s.name: s for s in admin.describe_topics(settings, [t.name for t in topics])}
    table = Table(title=f"topics at {settings.kafka_bootstrap}")
    for col in ("topic", "key", "value", "partitions (want/have)"):
        table.add_column(col)
    for spec in topics:
        have = states[spec.name].partitions
        value = spec.value.__name__ if spec.value else "raw bytes + dlq.* headers"
        table.add_row(
            spec.name, spec.key, value, f"{spec.partitions}/{have if have is not None else '-'}"
        )
    console.print(table)


def settings_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="The docs' table.")] = False,
) -> None:
    """Every STREAMREC_ setting with its default and meaning."""
    from cli.settings_doc import settings_markdown, settings_rows

    if markdown:
        sys.stdout.write(settings_markdown())
        return
    table = Table(title="STREAMREC_ settings")
    for col in ("variable", "default", "meaning"):
        table.add_column(col)
    for var, default, meaning in settings_rows():
        table.add_row(var, default, meaning)
    console.print(table)
