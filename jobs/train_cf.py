"""`streamrec train-cf`: train ALS on the events stored so far and make it the served
version.

load (Postgres ``user_events`` or the archive) → with ``--feedback``, read
``feedback.examples`` (archive or Kafka) for weak negatives, inverse-propensity and LLM
weights (:mod:`recsys.cf.impressions`) → build the weight matrix → train (one progress
step per iteration) → write the factors as a new version → activate it → prune old
versions → refresh the popularity snapshot. The run is logged as the version's
``als_models`` row and one log line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.progress import NoSteps, Steps
from recsys.exceptions import DataNotFound, InvalidRange

if TYPE_CHECKING:
    from recsys.cf.impressions import FeedbackSignals, FeedbackWeights
    from recsys.cf.interactions import InteractionMatrix
    from streams.settings import Settings

__all__ = [
    "TrainCfOptions",
    "TrainCfResult",
    "feedback_weights",
    "run_train_cf",
    "window_text",
]

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
    #: Use ``feedback.examples`` (impressions and outcomes) from ``feedback_source``.
    feedback: bool = False
    feedback_source: str = "archive"
    #: Archive root of ``feedback.examples`` (unset = ``archive``, else the settings').
    feedback_archive: Path | None = None
    #: Weak-negative weight, IPS clip, LLM-touched weight (unset = the settings').
    negative_weight: float | None = None
    ips_clip: float | None = None
    llm_weight: float | None = None


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
    #: What ``--feedback`` read and added (examples, negative cells, weights), or None.
    feedback: dict[str, Any] | None = None


def window_text(opts: TrainCfOptions) -> str:
    """The run's event window in words."""
    since = opts.since.isoformat() if opts.since else "the beginning"
    until = opts.until.isoformat() if opts.until else "now"
    return f"from {since} until {until}"


def feedback_weights(settings: Settings, opts: TrainCfOptions) -> FeedbackWeights:
    """The run's feedback weights: the options', else the settings'."""
    from recsys.cf.impressions import FeedbackWeights
    from recsys.exceptions import ConfigurationError

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    try:
        return FeedbackWeights(
            negative=pick(opts.negative_weight, settings.cf_feedback_negative_weight),
            ips_clip=pick(opts.ips_clip, settings.cf_feedback_ips_clip),
            llm_weight=pick(opts.llm_weight, settings.cf_feedback_llm_weight),
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def _read_feedback(
    settings: Settings, opts: TrainCfOptions, weights: FeedbackWeights, steps: Steps
) -> FeedbackSignals:
    """``feedback.examples`` of the window (by impression time) into the signals."""
    from jobs.ranges import read_range
    from recsys.cf.impressions import FeedbackSignals
    from recsys.records import FeedbackExample
    from streams.replay import ReplayRange
    from streams.topics import Topics

    spec = Topics(settings).feedback_examples
    signals = FeedbackSignals(weights)
    name = f"load feedback ({opts.feedback_source})"
    steps.start(name, None)
    root = opts.feedback_archive or opts.archive or settings.archive_root
    n = 0
    for message in read_range(settings, spec, ReplayRange(), opts.feedback_source, root, None):
        example = FeedbackExample.model_validate(message.value)
        if opts.since is not None and example.impression_at < opts.since:
            continue
        if opts.until is not None and example.impression_at >= opts.until:
            continue
        signals.add(example)
        n += 1
        if n % 5000 == 0:
            steps.advance(name, 5000)
    if not signals.n_examples:
        raise DataNotFound(
            f"--feedback: no feedback examples ({opts.feedback_source}, {window_text(opts)}); "
            "the feedback worker emits them once impressions' attribution windows close"
        )
    steps.done(name, f"{name}: {signals.n_examples}")
    return signals


async def _load(
    settings: Settings,
    opts: TrainCfOptions,
    pool: Any,
    steps: Steps,
    signals: FeedbackSignals | None = None,
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
    if signals is not None:
        matrix = builder.build(negatives=signals.negatives(), scales=signals.scales())
        source += f"+feedback:{opts.feedback_source}"
    else:
        matrix = builder.build()
    steps.done(
        "build matrix", f"build matrix: {len(matrix.users)} users x {len(matrix.items)} items"
    )
    return matrix, source


def _as_dt(epoch_s: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_s, tz=UTC) if epoch_s is not None else None


async def run_train_cf(
    settings: Settings, opts: TrainCfOptions, dsn: str, steps: Steps | None = None
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
        raise InvalidRange(f"--since must be before --until ({window_text(opts)})")
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
    steps = steps or NoSteps()
    seconds: dict[str, float] = {}
    pool = db.async_pool(
        dsn,
        min_size=1,
        max_size=2,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        ef_search=settings.hnsw_ef_search,
        name="train-cf",
    )
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        await pool.close()
        from recsys.exceptions import DatabaseUnavailable

        raise DatabaseUnavailable(f"cannot connect to Postgres: {exc}") from exc
    try:
        t = time.perf_counter()
        signals = None
        if opts.feedback:
            signals = _read_feedback(settings, opts, feedback_weights(settings, opts), steps)
        matrix, source = await _load(settings, opts, pool, steps, signals)
        seconds["load"] = time.perf_counter() - t
        feedback = (
            signals.summary() | {"negative_cells": matrix.n_negative}
            if signals is not None
            else None
        )
        if matrix.n_interactions == 0:
            raise DataNotFound(
                f"no user events to train on ({source}, {window_text(opts)}); the users "
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
            weights=DEFAULT_WEIGHTS.as_dict() | ({"feedback": feedback} if feedback else {}),
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
        feedback=feedback,
    )
    log.info(
        "train-cf: version %s %s from %s: %d events, %d users x %d items (%d cells), "
        "factors=%d iterations=%d regularization=%g alpha=%g, loss %s, seconds %s",
        version,
        "activated" if opts.activate else "written (inactive)",
        source,
        result.n_events,
        result.n_users,
        result.n_items,
        result.n_interactions,
        params.factors,
        params.iterations,
        params.regularization,
        params.alpha,
        f"{model.loss:.5f}" if model.loss is not None else "-",
        result.seconds,
    )
    return result
