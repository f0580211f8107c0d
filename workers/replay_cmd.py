"""`streamrec replay`: read a range of a topic from Kafka or the archive, then export
it, publish it to another topic, or re-run the logged requests through another policy
configuration (counterfactual responses stored beside the originals)."""

from __future__ import annotations

import itertools
import shutil
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
        return _counterfactual(settings, topics, spec, rng, root, opts, summary, counted)
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


def _counterfactual(
    settings: Settings,
    topics: Topics,
    spec: TopicSpec,
    rng: ReplayRange,
    root: Path,
    opts: ReplayOptions,
    summary: ReplaySummary,
    progress: Progress,
) -> ReplaySummary:
    from recsys.archive import ArchivedMessage, ArchiveWriter, list_files
    from recsys.counterfactual import build_policy, replay_requests
    from recsys.records import RecRequest, RecResponse, UserEvent
    from streams import admin
    from streams.producer import RecordProducer, registry_from_settings
    from streams.replay import ReplayRange, target_spec
    from streams.serde import AvroSerde

    assert opts.policy is not None
    if spec.name != topics.rec_requests.name:
        raise ConfigurationError(
            f"a counterfactual replay re-runs requests: read {topics.rec_requests.base}, "
            f"not {spec.base}"
        )
    responses_topic = topics.rec_responses
    if opts.out_topic in (responses_topic.name, responses_topic.base):
        raise ConfigurationError(
            "refusing to publish counterfactual responses to the live responses topic; "
            "name another --out-topic"
        )
    policy = build_policy(opts.policy, opts.engine)
    out_dir = opts.out_dir or root / "counterfactual" / opts.policy
    if list_files(out_dir, responses_topic.name):
        if not opts.overwrite:
            raise ConfigurationError(
                f"{out_dir / responses_topic.name} already holds responses of a replay; "
                "pass --overwrite to replace them"
            )
        shutil.rmtree(out_dir / responses_topic.name)
    logged_requests: dict[str, ArchivedMessage] = {}
    for message in _non_empty(_read(settings, spec, rng, opts.source, root, progress), spec.name):
        logged_requests.setdefault(message.value["request_id"], message)
    everything = ReplayRange()
    events: list[UserEvent] = []
    if policy.needs_events:
        if opts.source == "archive" and not list_files(root, topics.user_events.name):
            raise DataNotFound(
                f"policy engine {opts.engine!r} needs the user events before each request, "
                f"and {root} has no {topics.user_events.name}: archive them "
                "(STREAMREC_ARCHIVE_USER_EVENTS=true) or replay with --source kafka"
            )
        events = [
            UserEvent.model_validate(m.value)
            for m in _read(settings, topics.user_events, everything, opts.source, root, None)
        ]
    logged: dict[str, RecResponse] = {}
    if opts.source == "kafka" or list_files(root, responses_topic.name):
        for m in _read(settings, responses_topic, everything, opts.source, root, None):
            logged.setdefault(m.value["request_id"], RecResponse.model_validate(m.value))
    requests = [RecRequest.model_validate(m.value) for m in logged_requests.values()]
    serde = AvroSerde(registry_from_settings(settings))
    schema = serde.codec(RecResponse).schema
    schema_id = serde.registry.id_for(responses_topic.subject, schema)
    answered = []
    for request, response in replay_requests(policy, requests, events, logged):
        origin = logged_requests[request.request_id]
        answered.append(
            ArchivedMessage(
                topic=responses_topic.name,
                partition=origin.partition,
                offset=origin.offset,
                timestamp_ms=origin.timestamp_ms,
                key=response.user_id,
                headers=[("replay.policy", policy.name.encode()),
                         ("replay.source", origin.source.encode())],
                schema_id=schema_id,
                value=response.model_dump(mode="python"),
                value_schema=schema,
            )
        )  # fmt: skip
        summary.llm_used += int(response.llm_used)
        summary.request_ids.append(response.request_id)
    writer = ArchiveWriter(out_dir, roll_bytes=settings.archive_roll_bytes, roll_s=float("inf"))
    writer.register(responses_topic.name, schema)
    for message in sorted(answered, key=lambda m: (m.partition, m.offset)):
        writer.write(message)
    writer.close()
    summary.written = len(answered)
    summary.target = str(out_dir)
    if opts.out_topic:
        with RecordProducer(settings, serde) as producer:
            target = target_spec(opts.out_topic, responses_topic.partitions)
            admin.ensure_topics(settings, [target])
            for message in answered:
                producer.send(target, message.key, RecResponse.model_validate(message.value))
        summary.target += f" and topic {opts.out_topic}"
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
) -> None:
    """Read a range of a topic (Kafka or archive); export it, publish it to another topic,
    or re-run the logged requests through another policy configuration."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from workers.cli import _settings, console, err_console

    settings = _settings(bootstrap_servers=broker)
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
