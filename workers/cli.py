"""The `streamrec` command line.

Errors a user can cause (a busy port, an unreachable broker or database, a bad
setting) print one clear message and exit with status 2 — never a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from recsys.exceptions import ConfigurationError, StreamrecError
from streams.settings import Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamrec",
    help="LLM-augmented recommendations over Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
topics_app = typer.Typer(help="Create and list the topic catalogue.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

# Pipes and CI logs get wide lines instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

F = TypeVar("F", bound=Callable[..., Any])

BrokerOpt = Annotated[
    str | None, typer.Option("--broker", help="External Kafka bootstrap servers (host:port).")
]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="External Postgres DSN.")]
BrokerPortOpt = Annotated[
    int | None, typer.Option("--broker-port", help="Port of the embedded broker.")
]


def _setup_logging(settings: Settings | None = None, level: str | None = None) -> None:
    lvl = level or (settings.log_level if settings else "INFO")
    logging.basicConfig(
        level=lvl,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("librdkafka", "aiokafka", "faust", "mode", "httpx", "httpx2", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def friendly_errors(func: F) -> F:
    """Turn our errors into one red line and exit 2; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StreamrecError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _settings(**overrides: Any) -> Settings:
    settings = load_settings(**overrides)
    _setup_logging(settings)
    return settings


# ---- up ---------------------------------------------------------------------------------
@app.command()
@friendly_errors
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
    migrations, create topics, and run the workers in the foreground until Ctrl-C."""
    from workers.runtime import available_workers
    from workers.stack import Stack
    from workers.supervisor import Supervisor

    if llm not in (None, "local", "endpoint"):
        raise ConfigurationError(f"--llm must be local or endpoint, not {llm!r}")
    settings = _settings(
        bootstrap_servers=broker,
        database_url=database,
        broker_port=broker_port,
        workers=workers,
        llm_local=True if llm == "local" else None,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with Stack(settings) as stack:
        s = stack.settings
        console.print(
            f"[bold]broker[/]   {s.kafka_bootstrap} ({'embedded Tansu, topics in memory' if stack.broker else 'external'})"
        )
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
        missing = [w for w in s.workers if w not in present]
        for name in missing:
            err_console.print(
                f"[yellow]warning:[/] worker {name} is not part of this build; skipped"
            )
        supervisor = Supervisor(s, [w for w in s.workers if w in present], log_dir=None)
        supervisor.start()
        console.print(f"[bold]workers[/]  {', '.join(supervisor.pids())} — Ctrl-C to stop")
        try:
            supervisor.watch(until=stop)
        finally:
            codes = supervisor.stop()
            console.print(f"stopped workers: {codes}")


# ---- worker -----------------------------------------------------------------------------
@app.command()
@friendly_errors
def worker(
    name: Annotated[str, typer.Argument(help="enrich, users, serve, feedback, archive")],
) -> None:
    """Run one worker in the foreground (what `up` starts for each worker)."""
    from workers.runtime import run_worker

    settings = _settings()
    run_worker(name, settings)


# ---- doctor -----------------------------------------------------------------------------
@app.command()
@friendly_errors
def doctor(
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Print the effective configuration (secrets masked) and whether each capability is
    on — and if not, exactly why."""
    from workers.doctor import check_capabilities

    settings = _settings(bootstrap_servers=broker, database_url=database)
    caps = check_capabilities(settings)
    if as_json:
        console.print_json(
            json.dumps(
                {"settings": settings.describe(), "capabilities": [c.__dict__ for c in caps]}
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
        colours = {"on": "green", "off": "yellow", "error": "red"}
        for cap in caps:
            caps_table.add_row(cap.name, f"[{colours[cap.status]}]{cap.status}[/]", cap.detail)
        console.print(caps_table)
    if any(c.status == "error" and c.name in ("broker", "database") for c in caps):
        raise typer.Exit(1)


# ---- migrate ----------------------------------------------------------------------------
@app.command()
@friendly_errors
def migrate(database: DatabaseOpt = None) -> None:
    """Apply the numbered SQL migrations that are missing (idempotent)."""
    from recsys import db
    from streams.embedded import EmbeddedPostgres

    settings = _settings(database_url=database)
    pg = None
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
        pg = EmbeddedPostgres(settings.pg_data_dir)
        dsn = pg.start()
    else:
        dsn = settings.database_url.get_secret_value()
    try:
        db.wait_for_database(dsn)
        applied = db.apply_migrations(dsn)
        total = len(db.discover_migrations())
        for m in applied:
            console.print(f"applied {m.path.name}")
        console.print(f"{len(applied)} applied now, {total - len(applied)} already applied")
    finally:
        if pg is not None and not pg.adopted:
            pg.stop()


# ---- topics -----------------------------------------------------------------------------
@topics_app.command("create")
@friendly_errors
def topics_create(broker: BrokerOpt = None) -> None:
    """Create every topic of the catalogue that is missing, then check co-partitioning."""
    from streams import admin

    settings = _settings(bootstrap_servers=broker)
    report = admin.ensure_topics(settings)
    for name, state in sorted(report.items()):
        console.print(f"{state:8} {name}")


@topics_app.command("list")
@friendly_errors
def topics_list(broker: BrokerOpt = None) -> None:
    """List the catalogue with partition counts as the broker reports them."""
    from streams import admin
    from streams.topics import Topics

    settings = _settings(bootstrap_servers=broker)
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


# ---- settings ---------------------------------------------------------------------------
@app.command("settings")
@friendly_errors
def settings_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="The README table.")] = False,
) -> None:
    """Every STREAMREC_ setting with its default and meaning."""
    from workers.settings_doc import settings_markdown

    if markdown:
        sys.stdout.write(settings_markdown())
        return
    table = Table(title="STREAMREC_ settings")
    for col in ("variable", "default", "meaning"):
        table.add_column(col)
    for var, default, meaning in _settings_rows():
        table.add_row(var, default, meaning)
    console.print(table)


def _settings_rows() -> list[tuple[str, str, str]]:
    from workers.settings_doc import settings_rows

    return settings_rows()


# ---- demo -------------------------------------------------------------------------------
@app.command()
@friendly_errors
def demo(
    items: Annotated[
        int | None, typer.Option(help="Catalog size (400; 40 with --llm local).")
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Number of synthetic users (250; 100 with --llm local).")
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option(help="Recommendation requests to send (200; 30 with --llm local)."),
    ] = None,
    llm: Annotated[
        str,
        typer.Option(
            help="simulated (fast, the default) | local (a real 135M model on this CPU: "
            "slow, smaller workload) | endpoint | none"
        ),
    ] = "simulated",
    broker_port: BrokerPortOpt = None,
) -> None:
    """Run the whole component on this machine with a synthetic workload and report."""
    from workers.demo import DemoOptions, run_demo

    settings = _settings(broker_port=broker_port)
    options = DemoOptions.for_llm(llm, items=items, users=users, requests=requests)
    run_demo(settings, options, console)


# ---- replay / evaluate ------------------------------------------------------------------
def _register_data_commands() -> None:
    from workers.ab_enrich_cmd import ab_enrich
    from workers.evaluate_cmd import evaluate
    from workers.replay_cmd import replay
    from workers.train_cf_cmd import train_cf

    app.command("replay")(friendly_errors(replay))
    app.command("evaluate")(friendly_errors(evaluate))
    app.command("train-cf")(friendly_errors(train_cf))
    app.command("ab-enrich")(friendly_errors(ab_enrich))


_register_data_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
