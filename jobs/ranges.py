"""What a replay reads: options, the range of a topic in Kafka or the archive, times."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.progress import Counter
from recsys.exceptions import ConfigurationError, DataNotFound, InvalidRange

if TYPE_CHECKING:
    from recsys.archive import ArchivedMessage
    from streams.replay import ReplayRange
    from streams.settings import Settings
    from streams.topics import Topics, TopicSpec

__all__ = [
    "ReplayOptions",
    "ReplaySummary",
    "non_empty",
    "parse_time",
    "read_range",
    "resolve_topic",
]


def parse_time(text: str | None, option: str) -> int | None:
    """ISO-8601 (naive = UTC) or epoch milliseconds → epoch milliseconds."""
    if text is None:
        return None
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRange(
            f"{option}: cannot read {text!r}; use ISO-8601 (2026-01-31T12:00:00Z) or epoch ms"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class ReplayOptions:
    """What to read and what to do with it (exactly one action)."""

    topic: str
    source: str = "kafka"
    archive: Path | None = None
    partitions: tuple[int, ...] = ()
    from_offset: int | None = None
    to_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    export: Path | None = None
    fmt: str | None = None
    publish: str | None = None
    policy: str | None = None
    engine: str = "popularity"
    out_dir: Path | None = None
    out_topic: str | None = None
    overwrite: bool = False


@dataclass
class ReplaySummary:
    """What a replay did."""

    read: int = 0
    written: int = 0
    target: str = ""
    undecodable: int = 0
    llm_used: int = 0
    request_ids: list[str] = field(default_factory=list)
    #: The topic read (its full name, prefix included).
    topic: str = ""


def resolve_topic(topics: Topics, name: str) -> TopicSpec:
    for spec in topics.data_topics():
        if name in (spec.base, spec.name):
            return spec
    known = ", ".join(t.base for t in topics.data_topics())
    raise ConfigurationError(f"unknown topic {name!r}; known: {known}")


def read_range(
    settings: Settings,
    spec: TopicSpec,
    rng: ReplayRange,
    source: str,
    root: Path,
    progress: Counter | None,
    summary: ReplaySummary | None = None,
) -> Iterator[ArchivedMessage]:
    from recsys.archive import list_files, other_runs_hint, read_archive
    from streams.replay import KafkaRangeReader
    from streams.serde import AvroSerde

    if source == "archive":
        if not list_files(root, spec.name):
            raise DataNotFound(
                f"no archive of {spec.name} under {root}: run the archive worker, or pass "
                "--archive DIR (or --source kafka)"
                + other_runs_hint(
                    root, spec.base, settings.topic_prefix, f"streamrec replay {spec.base}"
                )
            )
        for message in read_archive(
            root,
            spec.name,
            partitions=set(rng.partitions) if rng.partitions is not None else None,
            from_offset=rng.from_offset,
            to_offset=rng.to_offset,
            since_ms=rng.since_ms,
            until_ms=rng.until_ms,
        ):
            if progress:
                progress(1)
            yield message
        return
    if source != "kafka":
        raise ConfigurationError(f"--source must be kafka or archive, not {source!r}")
    from streams.producer import registry_from_settings

    reader = KafkaRangeReader(settings, spec, AvroSerde(registry_from_settings(settings)))
    reader.plan(rng)
    yield from reader.read(rng, progress)
    if summary is not None:
        summary.undecodable += reader.undecodable


def non_empty(messages: Iterator[ArchivedMessage], what: str) -> Iterator[ArchivedMessage]:
    first = next(messages, None)
    if first is None:
        raise InvalidRange(f"no messages of {what} in the range")
    return itertools.chain([first], messages)
