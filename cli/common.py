"""What every command shares: consoles, settings + logging, friendly errors, options.

Errors a user can cause (a busy port, an unreachable broker or database, a bad
setting) print one clear message and exit with status 2 — never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from recsys.exceptions import StreamrecError
from streams.logfmt import configure_logging
from streams.settings import Settings, load_settings

__all__ = [
    "BrokerOpt",
    "BrokerPortOpt",
    "DatabaseOpt",
    "LogFormatOpt",
    "RichSteps",
    "TopicPrefixOpt",
    "console",
    "err_console",
    "friendly_errors",
    "load",
    "progress_bar",
    "setup_logging",
    "transient_steps",
]

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

TopicPrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--topic-prefix",
        help="Topic name prefix of the run to read (e.g. a demo's `demo-<n>.`; "
        "default: STREAMREC_TOPIC_PREFIX).",
    ),
]

LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format", help="text (default) or json (one object per line, for log shippers)."
    ),
]


def setup_logging(
    settings: Settings | None = None,
    level: str | None = None,
    *,
    component: str = "streamrec",
    to_file: bool = False,
) -> None:
    """One line format (time, level, component[pid], logger) for the CLI and the workers.

    Long-running components (``up``, each worker, the dashboard) also append to
    ``<home>/logs/<component>.log``.
    """
    lvl = level or (settings.log_level if settings else "INFO")
    fmt = settings.log_format if settings else "text"
    log_dir = settings.home / "logs" if settings is not None and to_file else None
    configure_logging(component, level=lvl, fmt=fmt, log_dir=log_dir)


def load(component: str = "streamrec", *, to_file: bool = False, **overrides: Any) -> Settings:
    """The process settings (explicit options win over the environment), logging set up."""
    settings = load_settings(**overrides)
    setup_logging(settings, component=component, to_file=to_file)
    return settings


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


@contextmanager
def progress_bar(label: str, *, transient: bool = False) -> Iterator[Progress]:
    """A rich progress display on stderr (one task per stage); ``transient``: the bars
    vanish when done (the caller prints its own summary line)."""
    with Progress(
        TextColumn(f"[bold]{label}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    ) as progress:
        yield progress


@contextmanager
def transient_steps(label: str) -> Iterator[RichSteps]:
    """:class:`RichSteps` whose bars vanish when done (the demo prints one summary line)."""
    with progress_bar(label, transient=True) as bar:
        yield RichSteps(bar)


class RichSteps:
    """:class:`jobs.progress.Steps` drawn as one rich progress task per stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def start(self, name: str, total: float | None) -> None:
        """A new stage with ``total`` steps (None: unknown)."""
        self.tasks[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, n: float = 1) -> None:
        """``n`` more steps of stage ``name``."""
        if name in self.tasks:
            self.progress.advance(self.tasks[name], n)

    def done(self, name: str, description: str | None = None) -> None:
        """Stage ``name`` is complete (its bar full, its line reworded)."""
        if name not in self.tasks:
            return
        task = self.progress.tasks[self.tasks[name]]
        total = task.total if task.total is not None else max(task.completed, 1)
        self.progress.update(task.id, total=total, completed=total, description=description or name)
