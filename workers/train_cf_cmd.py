"""`streamrec train-cf`: train ALS on the events stored so far and make it the served
version.

load (Postgres ``user_events`` or the archive) → build the weight matrix → train
(one progress step per iteration) → write the factors as a new version → activate it
→ prune old versions → refresh the popularity snapshot. The run is logged as the
version's ``als_models`` row and one log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from recsys.exceptions import DataNotFound, InvalidRange

if TYPE_CHECKING:
    from rich.progress import Progress

    from recsys.cf.interactions import InteractionMatrix
    from streams.settings import Settings

__all__ = ["TrainCfOptions", "TrainCfResult", "run_train_cf", "train_cf"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainCfOptions:
    """One training run (unset = the settings' value)."""

    factors: int | None = None
    iterations: int | None = None
    regularization: float | None = None
    alpha: float | None = None
    seed: int = 42
    since: datetime | None = None
    until: datetime | None = None
    archive: Path | None = None
    activate: bool = True


@dataclass
class TrainCfResult:
    """What a run did (printed by the CLI, returned to tests)."""

    version: str
    active: bool
    source: str
    n_events: int
    n_users: int
    n_items: int
    n_interactions: int
    seconds: dict[str, float] = field(default_factory=dict)
    loss: float | None = None
    pruned: list[str] = field(default_factory=list)
    popularity_items: int = 0


class _Steps:
    """The rich progress bar's tasks, or nothing (tests, no terminal)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def start(self, name: str, total: float | None) -> None:
        if self.progress is not None:
            self.tasks[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, n: float = 1) -> None:
        if self.progress is not None and name in self.tasks:
            self.progress.advance(self.tasks[name], n)

    def done(self, name: str, description: str | None = None) -> None:
        if self.progress is not None and name in self.tasks:
            task = self.progress.tasks[self.tasks[name]]
            total = task.total if task.total is not None else max(task.completed, 1)
            self.progress.update(
                task.id, total=total, completed=total, description=description or name
            )


def _window_text(opts: TrainCfOptions) -> str:
    since = opts.since.isoformat() if opts.since else "the beginning"
    until = opts.until.isoformat() if opts.until else "now"
    return f"from {since} until {until}"


async def _load(
    settings: Settings, opts: TrainCfOptions, pool: Any, steps: _Steps
) -> tuple[InteractionMatrix, str]:
    """Stream the events into the matrix builder (progress per 5,000 events)."""
    from recsys.cf.interactions import MatrixBuilder
    from recsys.cf.sources import archive_interactions, count_postgres_events, postgres_interactions
    from recsys.cf.weights import DEFAULT_WEIGHTS

    builder = MatrixBuilder(DEFAULT_WEIGHTS)
    if opts.archive is not None:
        from streams.topics import Topics

        topic = Topics(settings).user_events.name
        name, source = "load events (archive)", f"archive:{opts.archive}"
        steps.start(name, None)
        for n, event in enumerate(
            archive_interactions(opts.archive, topic, opts.since, opts.until), 1
        ):
            builder.add(event)
            if n % 5000 == 0:
                steps.advance(name, 5000)
    else:
        name, source = "load events (postgres)", "postgres"
        steps.start(name, await count_postgres_events(pool, opts.since, opts.until))
        n = 0
        async for event in postgres_interactions(pool, opts.since, opts.until):
            builder.add(event)
            n += 1
            if n % 5000 == 0:
                steps.advance(name, 5000)
    steps.done(name, f"{name}: {builder.n_events}")
    steps.start("build matrix", 1)
    matrix = builder.build()
    steps.done(
        "build matrix", f"build matrix: {len(matrix.users)} users x {len(matrix.items)} items"
    )
    return matrix, source


def _as_dt(epoch_s: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_s, tz=UTC) if epoch_s is not None else None


async def run_train_cf(
    settings: Settings, opts: TrainCfOptions, dsn: str, progress: Progress | None = None
) -> TrainCfResult:
    """Train, write, activate; the CLI and tests call this.

    Raises:
        ConfigurationError: an unsupported factor count or bad parameter.
        DataNotFound: no events in the window (or no archived user events).
        DatabaseUnavailable: Postgres cannot be reached.
    """
    from recsys import db
    from recsys.cf.als import AlsParams, train_als
    from recsys.cf.als_store import PgAls, TrainingRun, check_factors
    from recsys.cf.popularity import PgPopularity
    from recsys.cf.weights import DEFAULT_WEIGHTS
    from recsys.exceptions import ConfigurationError

    if opts.since and opts.until and opts.since >= opts.until:
        raise InvalidRange(f"--since must be before --until ({_window_text(opts)})")
    factors = settings.als_factors if opts.factors is None else opts.factors
    check_factors(factors)
    try:
        params = AlsParams(
            factors=factors,
            iterations=settings.als_iterations if opts.iterations is None else opts.iterations,
            regularization=(
                settings.als_regularization if opts.regularization is None else opts.regularization
            ),
            alpha=settings.als_alpha if opts.alpha is None else opts.alpha,
            seed=opts.seed,
            threads=settings.als_threads,
            compute_loss=True,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    steps = _Steps(progress)
    seconds: dict[str, float] = {}
    pool = db.async_pool(dsn, min_size=1, max_size=2, statement_timeout_ms=settings.db_statement_timeout_ms, ef_search=settings.hnsw_ef_search, name="train-cf")  # fmt: skip
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        await pool.close()
        from recsys.exceptions import DatabaseUnavailable

        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    try:
        t = time.perf_counter()
        matrix, source = await _load(settings, opts, pool, steps)
        seconds["load"] = time.perf_counter() - t
        if matrix.n_interactions == 0:
            raise DataNotFound(
                f"no user events to train on ({source}, {_window_text(opts)}); the users "
                "worker stores them in user_events as they arrive"
            )

        t = time.perf_counter()
        steps.start("train ALS", params.iterations)

        def on_iteration(iteration: int, elapsed: float, loss: float | None) -> None:
            steps.advance("train ALS")

        model = train_als(matrix, params, on_iteration, weight_cap=DEFAULT_WEIGHTS.cap)
        seconds["train"] = time.perf_counter() - t

        t = time.perf_counter()
        store = PgAls(pool, cache_s=0)
        steps.start("write factors", len(model.item_ids))
        run = TrainingRun(
            source=source,
            n_events=matrix.n_events,
            n_users=len(matrix.users),
            n_items=len(matrix.items),
            n_interactions=matrix.n_interactions,
            window_since=opts.since,
            window_until=opts.until,
            first_event_at=_as_dt(matrix.first_at),
            last_event_at=_as_dt(matrix.last_at),
            weights=DEFAULT_WEIGHTS.as_dict(),
            metrics={"seconds": {k: round(v, 3) for k, v in seconds.items()}},
        )
        version = await store.write(model, run, on_rows=lambda n: steps.advance("write factors", n))
        pruned: list[str] = []
        if opts.activate:
            await store.activate(version)
            pruned = await store.prune(settings.als_keep_versions)
        seconds["write"] = time.perf_counter() - t

        t = time.perf_counter()
        popularity = PgPopularity(pool, half_life_h=settings.popularity_half_life_h)
        popular = await popularity.refresh()
        seconds["popularity"] = time.perf_counter() - t
    finally:
        await pool.close()
    result = TrainCfResult(
        version=version,
        active=opts.activate,
        source=source,
        n_events=matrix.n_events,
        n_users=len(matrix.users),
        n_items=len(matrix.items),
        n_interactions=matrix.n_interactions,
        seconds={k: round(v, 3) for k, v in seconds.items()},
        loss=model.loss,
        pruned=pruned,
        popularity_items=max(popular, 0),
    )
    log.info(
        "train-cf: version %s %s from %s: %d events, %d users x %d items (%d cells), "
        "factors=%d iterations=%d regularization=%g alpha=%g, loss %s, seconds %s",
        version, "activated" if opts.activate else "written (inactive)", source,
        result.n_events, result.n_users, result.n_items, result.n_interactions,
        params.factors, params.iterations, params.regularization, params.alpha,
        f"{model.loss:.5f}" if model.loss is not None else "-", result.seconds,
    )  # fmt: skip
    return result


def _database(settings: Settings, database: str | None) -> tuple[str, Callable[[], None]]:
    """The DSN to use and how to let go of it (embedded Postgres when none is set)."""
    from recsys import db
    from streams.embedded import EmbeddedPostgres

    dsn = database or (settings.database_url.get_secret_value() if settings.database_url else None)
    if dsn is not None:
        db.wait_for_database(dsn)
        db.apply_migrations(dsn)
        return dsn, lambda: None
    settings.home.mkdir(parents=True, exist_ok=True)
    pg = EmbeddedPostgres(settings.pg_data_dir)
    dsn = pg.start()
    db.apply_migrations(dsn)
    return dsn, (lambda: None) if pg.adopted else pg.stop


def train_cf(
    factors: Annotated[
        int | None, typer.Option(help="Latent factors: 16, 32, 64, 128 or 256 (default: setting).")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="ALS iterations.")] = None,
    regularization: Annotated[float | None, typer.Option(help="L2 regularisation λ.")] = None,
    alpha: Annotated[
        float | None, typer.Option(help="Confidence scale alpha (1 + alpha·w).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same data + seed = same model).")] = 42,
    since: Annotated[
        str | None, typer.Option(help="Only events at or after this time (ISO-8601 or epoch ms).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only events before this time (ISO-8601 or epoch ms).")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="Train on archived user.events under this archive root instead."),
    ] = None,
    no_activate: Annotated[
        bool, typer.Option("--no-activate", help="Write the version but keep serving the old one.")
    ] = False,
    database: Annotated[
        str | None, typer.Option("--database", help="External Postgres DSN.")
    ] = None,
) -> None:
    """Train implicit-feedback ALS on the stored user events, write the item factors to
    pgvector as a new model version and activate it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workers.cli import _settings, console, err_console
    from workers.replay_cmd import parse_time

    settings = _settings()

    def when(text: str | None, option: str) -> datetime | None:
        ms = parse_time(text, option)
        return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms is not None else None

    opts = TrainCfOptions(
        factors=factors, iterations=iterations, regularization=regularization, alpha=alpha,
        seed=seed, since=when(since, "--since"), until=when(until, "--until"),
        archive=archive, activate=not no_activate,
    )  # fmt: skip
    if archive is not None and not archive.is_dir():
        raise DataNotFound(f"--archive {archive}: no such folder")
    dsn, release = _database(settings, database)
    try:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=err_console, transient=False,
        ) as progress:  # fmt: skip
            result = asyncio.run(run_train_cf(settings, opts, dsn, progress))
    finally:
        release()
    state = "active" if result.active else "inactive (--no-activate)"
    loss = f"{result.loss:.5f}" if result.loss is not None else "-"
    console.print(
        f"ALS version [bold]{result.version}[/] ({state}): {result.n_events} events from "
        f"{result.source}, {result.n_users} users x {result.n_items} items, "
        f"{result.n_interactions} interactions; training loss {loss}",
        highlight=False,
    )
    console.print(
        "seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items())
        + (f"; pruned {', '.join(result.pruned)}" if result.pruned else "")
        + f"; popularity: {result.popularity_items} items",
        highlight=False,
    )  # fmt: skip
