"""`streamrec learn-policy`: the next serving policy from the logged feedback stream.

Reads ``feedback.examples`` (Kafka or the archive, a time or offset range), turns them
into one logged request each (context, action, exact propensity, reward), runs
:func:`recsys.policy.learn.learn` against the current policy (the active version in
Postgres, else the settings' policy) and, unless ``dry_run``, stores and activates the
learned policy when — and only when — the safe-deployment rule says so. Running serve
workers pick the new version up within ``policy_refresh_s`` seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.progress import NoSteps, Steps
from jobs.ranges import non_empty, read_range
from recsys.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from recsys.policy.model import Policy
    from recsys.policy.space import CandidateSpace
    from streams.settings import Settings

__all__ = ["LearnPolicyOptions", "run_learn_policy"]


@dataclass(frozen=True)
class LearnPolicyOptions:
    """What to read, how to learn, where the report goes, whether to deploy."""

    source: str = "kafka"
    archive: Path | None = None
    partitions: tuple[int, ...] = ()
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    reward: str = "any"
    estimator: str = "snips"
    holdout: float = 0.5
    resamples: int = 500
    confidence: float = 0.95
    min_matches: int = 3
    seed: int = 0
    space: Path | None = None
    #: exploration rate of the learned policy in every bucket (None: the settings')
    epsilon: float | None = None
    dry_run: bool = False
    json_out: Path | None = None
    html: Path | None = None

    def __post_init__(self) -> None:
        """Refuse bad options before anything is read or started."""
        checks = [
            (
                self.source in ("kafka", "archive"),
                f"--source must be kafka or archive, not {self.source!r}",
            ),
            (
                self.reward in ("any", "click", "purchase"),
                f"--reward must be any, click or purchase, not {self.reward!r}",
            ),
            (
                self.estimator in ("snips", "dr"),
                f"--estimator must be snips or dr, not {self.estimator!r}",
            ),
            (0.0 < self.holdout < 1.0, f"--holdout must be between 0 and 1, got {self.holdout}"),
            (
                0.0 < self.confidence < 1.0,
                f"--confidence must be between 0 and 1, got {self.confidence}",
            ),
            (
                self.resamples >= 50,
                f"--bootstrap needs at least 50 resamples, got {self.resamples}",
            ),
            (self.min_matches >= 1, f"--min-matches must be at least 1, got {self.min_matches}"),
            (
                self.epsilon is None or 0.0 <= self.epsilon <= 1.0,
                f"--epsilon must be in [0, 1], got {self.epsilon}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message)


def _space(path: Path | None) -> CandidateSpace:
    from recsys.policy.space import CandidateSpace

    if path is None:
        return CandidateSpace()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFound(f"--space: no file {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"--space: cannot read {path}: {exc}") from exc
    try:
        return CandidateSpace.from_document(doc)
    except ValueError as exc:
        raise ConfigurationError(f"--space {path}: {exc}") from exc


def _epsilon(settings: Settings, opts: LearnPolicyOptions) -> dict[Any, float]:
    from recsys.policy.model import BUCKETS
    from recsys.serving.config import ServingConfig

    if opts.epsilon is not None:
        if not 0.0 <= opts.epsilon <= 1.0:
            raise ConfigurationError(f"--epsilon must be in [0, 1], got {opts.epsilon}")
        return {b: opts.epsilon for b in BUCKETS}
    cfg = ServingConfig.from_settings(settings)
    return {b: cfg.epsilon_of(b) for b in BUCKETS}


async def _current(settings: Settings, dsn: str) -> tuple[Policy, bool]:
    """The active policy in Postgres (True), or the settings' policy (False)."""
    from recsys import db
    from recsys.policy.store import PgPolicies
    from recsys.serving.config import ServingConfig
    from recsys.serving.default_policy import default_policy

    pool = db.async_pool(dsn, min_size=1, max_size=1, name="learn-policy")
    await pool.open(wait=True, timeout=30)
    try:
        active = await PgPolicies(pool).active()
    finally:
        await pool.close()
    if active is not None:
        return active, True
    return default_policy(ServingConfig.from_settings(settings)), False


async def _deploy(dsn: str, policy: Policy, parent: str, summary: dict[str, Any]) -> str:
    from recsys import db
    from recsys.policy.store import PgPolicies

    pool = db.async_pool(dsn, min_size=1, max_size=1, name="learn-policy")
    await pool.open(wait=True, timeout=30)
    try:
        store = PgPolicies(pool)
        stored = await store.write(
            policy, source="learn-policy", parent_version=parent, report=summary
        )
        await store.activate(stored.version)
    finally:
        await pool.close()
    return stored.version


async def run_learn_policy(
    settings: Settings, opts: LearnPolicyOptions, dsn: str, steps: Steps | None = None
) -> dict[str, Any]:
    """Learn, judge, maybe deploy; write JSON/HTML when asked; return the report.

    Raises:
        ConfigurationError: a bad option; DataNotFound, InvalidRange: nothing to read.
    """
    from recsys.policy.learn import LearnConfig, learn
    from recsys.policy.logged import Rewards, requests_from_examples
    from recsys.policy.report_html import render_policy_html
    from recsys.records import FeedbackExample
    from streams.replay import ReplayRange
    from streams.topics import Topics

    steps = steps or NoSteps()
    try:
        rewards = Rewards(opts.reward)
        cfg = LearnConfig(
            estimator=opts.estimator,
            holdout=opts.holdout,
            resamples=opts.resamples,
            confidence=opts.confidence,
            min_matches=opts.min_matches,
            seed=opts.seed,
            epsilon=_epsilon(settings, opts),
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    space = _space(opts.space)
    spec = Topics(settings).feedback_examples
    rng = ReplayRange(
        partitions=frozenset(opts.partitions) if opts.partitions else None,
        from_offset=opts.from_offset,
        to_offset=opts.to_offset,
        since_ms=opts.since_ms,
        until_ms=opts.until_ms,
    )
    root = opts.archive or settings.archive_root
    steps.start("read", None)
    examples = [
        FeedbackExample.model_validate(m.value)
        for m in non_empty(
            read_range(settings, spec, rng, opts.source, root, lambda n: steps.advance("read", n)),
            spec.name,
        )
    ]
    requests, skipped = requests_from_examples(examples, rewards)
    steps.done("read", f"{len(examples)} examples, {len(requests)} requests")
    if not requests:
        raise DataNotFound(
            f"none of the {len(examples)} examples in the range carries a logged decision "
            f"(policy version): {skipped}"
        )
    current, stored = await _current(settings, dsn)

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in started:
            steps.start(stage, total)
            started.add(stage)
        steps.advance(stage, 1)

    started: set[str] = set()
    result = learn(requests, current, space, cfg, progress)
    for stage in started:
        steps.done(stage)
    report = result.as_json()
    report.update(
        {
            "learned_at": datetime.now(UTC).isoformat(),
            "source": opts.source,
            "topic": spec.name,
            "range": {
                "partitions": sorted(opts.partitions) or None,
                "from_offset": opts.from_offset,
                "to_offset": opts.to_offset,
                "since_ms": opts.since_ms,
                "until_ms": opts.until_ms,
            },
            "reward": opts.reward,
            "space": space.as_json(),
            "examples": len(examples),
            "skipped": skipped,
            "logged_by": dict(Counter(r.policy_version or "-" for r in requests).most_common()),
            "current_source": "postgres" if stored else "settings",
            "dry_run": opts.dry_run,
            "activated": None,
        }
    )
    if result.deploy and not opts.dry_run:
        steps.start("deploy", 1)
        summary = {k: report[k] for k in ("reason", "n_requests", "changed_cells", "config")}
        summary["estimates"] = {
            k: report["estimates"][k]["overall"] for k in ("current", "learned")
        }
        report["activated"] = await _deploy(dsn, result.learned, current.version, summary)
        steps.done("deploy", f"activated {report['activated']}")
    elif result.deploy:
        report["reason"] += " (dry run: nothing stored)"
    if opts.json_out is not None and str(opts.json_out) != "-":
        opts.json_out.parent.mkdir(parents=True, exist_ok=True)
        opts.json_out.write_text(json.dumps(report, indent=2, default=str))
    if opts.html is not None:
        opts.html.parent.mkdir(parents=True, exist_ok=True)
        opts.html.write_text(render_policy_html(report), encoding="utf-8")
    return report
