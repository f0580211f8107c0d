"""`streamrec replay`: read a range of a topic from Kafka or the archive, then export
it, publish it to another topic, or re-run the logged requests through another policy
configuration (counterfactual responses stored beside the originals)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from recsys.exceptions import ConfigurationError, DataNotFound, InvalidRange

if TYPE_CHECKING:
    from recsys.archive import ArchivedMessage
    from streams.replay import ReplayRange
    from streams.settings import Settings
    from streams.topics import Topics, TopicSpec

__all__ = ["ReplayOptions", "ReplaySummary", "parse_time", "replay", "run_replay"]

Progress = Callable[[int], None]


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


def _resolve_topic(topics: Topics, name: str) -> TopicSpec:
    for spec in topics.data_topics():
        if name in (spec.base, spec.name):
            return spec
    known = ", ".join(t.base for t in topics.data_topics())
    raise ConfigurationError(f"unknown topic {name!r}; known: {known}")


def _read(
    settings: Settings,
    spec: TopicSpec,
    rng: ReplayRange,
    source: str,
    root: Path,
    progress: Progress | None,
    summary: ReplaySummary | None = None,
) -> Iterator[ArchivedMessage]:
    from recsys.archive import list_files, read_archive
    from streams.replay import KafkaRangeReader
    from streams.serde import AvroSerde

    if source == "archive":
        if not list_files(root, spec.name):
            raise DataNotFound(
                f"no archive of {spec.name} under {root}: run the archive worker, or pass "
                "--archive DIR (or --source kafka)"
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


def _non_empty(messages: Iterator[ArchivedMessage], what: str) -> Iterator[ArchivedMessage]:
    first = next(messages, None)
    if first is None:
        raise InvalidRange(f"no messages of {what} in the range")
    return itertools.chain([first], messages)


def run_replay(
    settings: Settings, opts: ReplayOptions, console: Console, progress: Progress | None = None
) -> ReplaySummary:
    """Do one replay; the CLI and tests call this."""
    from streams.replay import ReplayRange
    from streams.topics import Topics

    actions = [a for a in (opts.export, opts.publish, opts.policy) if a]
    if len(actions) != 1:
        raise ConfigurationError("choose exactly one of --export, --publish or --policy")
    topics = Topics(settings)
    spec = _resolve_topic(topics, opts.topic)
    rng = ReplayRange(
        partitions=frozenset(opts.partitions) if opts.partitions else None,
        from_offset=opts.from_offset,
        to_offset=opts.to_offset,
        since_ms=opts.since_ms,
        until_ms=opts.until_ms,
    )
    root = opts.archive or settings.archive_root
    summary = ReplaySummary()

    def counted(n: int) -> None:
        summary.read += n
        if progress:
            progress(n)

    if opts.policy:
        from workers.counterfactual_cmd import run_counterfactual

        return run_counterfactual(settings, topics, spec, rng, root, opts, summary, counted)
    messages = _non_empty(
        _read(settings, spec, rng, opts.source, root, counted, summary), spec.name
    )
    if opts.export:
        from recsys.archive import EXPORT_FORMATS, export_messages

        fmt = (opts.fmt or opts.export.suffix.lstrip(".")).lower()
        if fmt not in EXPORT_FORMATS:
            raise ConfigurationError(
                f"cannot tell the export format of {opts.export}; use a .avro, .parquet or "
                ".csv file name or --format"
            )
        summary.written = export_messages(messages, opts.export, fmt)
        summary.target = str(opts.export)
    else:
        assert opts.publish is not None
        from streams.producer import RecordProducer
        from streams.replay import publish, target_spec

        if opts.publish in (spec.name, spec.base):
            raise ConfigurationError("refusing to publish a replay into the topic it reads")
        target = target_spec(opts.publish, spec.partitions)
        with RecordProducer(settings) as producer:
            summary.written = publish(settings, messages, target, producer)
        summary.target = target.name
    console.print(
        f"replayed {summary.written} message(s) of {spec.name} ({opts.source}) → {summary.target}"
        + (f"; {summary.undecodable} undecodable skipped" if summary.undecodable else "")
    )
    return summary


def replay(
    topic: Annotated[
        str, typer.Argument(help="Topic to read, e.g. rec.responses or rec.requests.")
    ],
    source: Annotated[str, typer.Option(help="Read from `kafka` or `archive`.")] = "kafka",
    archive: Annotated[
        Path | None, typer.Option(help="Archive root (default: the archive_root setting).")
    ] = None,
    partition: Annotated[
        list[int] | None, typer.Option("--partition", "-p", help="Only this partition (repeat).")
    ] = None,
    from_offset: Annotated[int | None, typer.Option(help="First offset (inclusive).")] = None,
    to_offset: Annotated[int | None, typer.Option(help="Stop before this offset.")] = None,
    since: Annotated[
        str | None, typer.Option(help="First Kafka timestamp (inclusive): ISO-8601 or epoch ms.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Stop before this timestamp.")] = None,
    export: Annotated[
        Path | None, typer.Option(help="Export the range to this .avro/.parquet/.csv file.")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="avro, parquet or csv (default: by suffix).")
    ] = None,
    publish: Annotated[
        str | None, typer.Option(help="Publish the range byte for byte to this topic.")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="Re-run the logged requests (rec.requests) with this configuration."),
    ] = None,
    engine: Annotated[str, typer.Option(help="Policy engine that builds the configuration.")] = (
        "popularity"
    ),
    out_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where counterfactual responses go (default <archive>/counterfactual/<policy>)."
        ),
    ] = None,
    out_topic: Annotated[
        str | None, typer.Option(help="Also publish counterfactual responses to this topic.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace earlier counterfactual responses of this policy.")
    ] = False,
    broker: Annotated[
        str | None, typer.Option("--broker", help="External Kafka bootstrap servers.")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option("--database", help="Postgres DSN the serving engine reads (items, CF)."),
    ] = None,
) -> None:
    """Read a range of a topic (Kafka or archive); export it, publish it to another topic,
    or re-run the logged requests through another policy configuration."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workers.cli import _settings, console, err_console

    settings = _settings(bootstrap_servers=broker, database_url=database)
    opts = ReplayOptions(
        topic=topic, source=source, archive=archive, partitions=tuple(partition or ()),
        from_offset=from_offset, to_offset=to_offset,
        since_ms=parse_time(since, "--since"), until_ms=parse_time(until, "--until"),
        export=export, fmt=fmt, publish=publish, policy=policy, engine=engine,
        out_dir=out_dir, out_topic=out_topic, overwrite=overwrite,
    )  # fmt: skip
    with Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bar:
        task = bar.add_task(topic, total=None)
        summary = run_replay(settings, opts, console, lambda n: bar.advance(task, n))
    if policy:
        console.print(
            f"policy {policy}: {summary.written} counterfactual response(s) for "
            f"{len(set(summary.request_ids))} logged request(s), llm_used in "
            f"{summary.llm_used} → {summary.target}"
        )
