"""`streamrec evaluate`: metrics over archived data, sliced by warmth bucket, route and
llm_used; off-policy estimates of other routing policies; terminal tables, JSON and a
self-contained HTML report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["DEFAULT_TARGETS", "EvaluateOptions", "json_default", "run_evaluate"]

DEFAULT_TARGETS = ("logged", "router", "router-no-llm", "router-llm-eligible")


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate and where the results go."""

    archive: Path | None = None
    policies: tuple[str, ...] = ()
    k: int = 10
    targets: tuple[str, ...] = DEFAULT_TARGETS
    clip: float | None = None
    reward: str = "any"
    categories: Path | None = None
    json_out: Path | None = None
    html: Path | None = None
    ab: Path | None = None
    #: Postgres with the policy versions (default: the database_url setting)
    database: str | None = None


def json_default(value: Any) -> Any:
    """What json.dumps writes for values it does not know (dates, paths): their text."""
    return str(value)


def _clean(value: Any) -> Any:
    """NaN/inf → None, so the JSON is valid everywhere."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def run_evaluate(settings: Settings, opts: EvaluateOptions) -> dict[str, Any]:
    """Load the archive, evaluate, write JSON/HTML when asked; return the report."""
    from recsys.archive import list_files, other_runs_hint
    from recsys.evaluation import ArchiveTopics, EvaluationData, evaluate, load_categories
    from recsys.evaluation.html import render_html
    from recsys.exceptions import ConfigurationError, DataNotFound
    from streams.topics import Topics

    if opts.k < 1:
        raise ConfigurationError(f"--k must be at least 1, got {opts.k}")
    if opts.reward not in ("any", "click", "purchase"):
        raise ConfigurationError(f"--reward must be any, click or purchase, not {opts.reward!r}")
    if opts.clip is not None and opts.clip <= 0:
        raise ConfigurationError("--clip must be positive")
    policies, router = _targets(settings, opts)
    topics = Topics(settings)
    root = opts.archive or settings.archive_root
    if not list_files(root, topics.rec_responses.name):
        raise DataNotFound(
            f"no archived responses under {root / topics.rec_responses.name}; run the "
            "archive worker (or point --archive at an archive folder)"
            + other_runs_hint(
                root, topics.rec_responses.base, settings.topic_prefix, "streamrec evaluate"
            )
        )
    data = EvaluationData.from_archive(
        root,
        ArchiveTopics(
            responses=topics.rec_responses.name,
            feedback_examples=topics.feedback_examples.name,
            llm_log=topics.llm_log.name,
            requests=topics.rec_requests.name,
            user_events=topics.user_events.name,
        ),
        policies=opts.policies,
    )
    if opts.categories is not None:
        data.categories = load_categories(opts.categories)
    try:
        report = evaluate(
            data,
            k=opts.k,
            window_s=float(settings.attribution_window_s),
            targets=opts.targets,
            clip=opts.clip,
            reward=opts.reward,
            policies=policies,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    report = _clean(report)
    report["archive"] = str(root)
    report["off_policy"]["router"] = router
    if opts.ab is not None:
        report["enrichment_ab"] = _load_ab(opts.ab)
    if opts.json_out is not None and str(opts.json_out) != "-":
        opts.json_out.parent.mkdir(parents=True, exist_ok=True)
        opts.json_out.write_text(json.dumps(report, indent=2, default=json_default))
    if opts.html is not None:
        opts.html.parent.mkdir(parents=True, exist_ok=True)
        opts.html.write_text(render_html(report), encoding="utf-8")
    return report


def _targets(settings: Settings, opts: EvaluateOptions) -> tuple[dict[str, Any], str]:
    """The target policies: ``router`` and its variants from the policy that ships — the
    active version in Postgres when a database is configured, else the settings' policy
    — and ``policy:<version>`` for any stored version named in the targets."""
    from recsys.evaluation.offpolicy import PolicyTarget, policy_targets
    from recsys.serving.config import ServingConfig
    from recsys.serving.default_policy import default_policy

    settings_policy = default_policy(ServingConfig.from_settings(settings))
    dsn = opts.database or (
        settings.database_url.get_secret_value() if settings.database_url else None
    )
    if dsn is None:
        named = [t for t in opts.targets if t.startswith("policy:")]
        if named:
            from recsys.exceptions import ConfigurationError

            raise ConfigurationError(
                f"{named[0]}: stored policy versions need a database (--database or "
                "STREAMREC_DATABASE_URL)"
            )
        targets = policy_targets(settings_policy)
        return dict(targets), f"{settings_policy.version} (the settings; no database configured)"

    from recsys.policy.store import read_policies

    versions = [t.split(":", 1)[1] for t in opts.targets if t.startswith("policy:")]
    active, stored = read_policies(dsn, versions)
    out: dict[str, Any] = dict(policy_targets(active or settings_policy))
    for version, policy in stored.items():
        out[f"policy:{version}"] = PolicyTarget(f"policy:{version}", policy)
    if active is None:
        return out, f"{settings_policy.version} (the settings; no active version)"
    return out, f"{active.version} (active in Postgres)"


def _load_ab(path: Path) -> dict[str, Any]:
    """An `ab-enrich --json` report, to show beside the evaluation."""
    from recsys.exceptions import ConfigurationError, DataNotFound

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataNotFound(
            f"--ab: no file {path}; write one with `streamrec ab-enrich --json`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"--ab: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not {"retrieval", "judge", "query_set"} <= data.keys():
        raise ConfigurationError(f"--ab: {path} is not an `ab-enrich --json` report")
    return data
