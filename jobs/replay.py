"""`streamrec replay`: read a range of a topic from Kafka or the archive, then export
it, publish it to another topic, or re-run the logged requests through another policy
configuration (counterfactual responses stored beside the originals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobs.counterfactual import run_counterfactual
from jobs.progress import Counter
from jobs.ranges import (
    ReplayOptions,
    ReplaySummary,
    non_empty,
    parse_time,
    read_range,
    resolve_topic,
)
from recsys.exceptions import ConfigurationError

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["ReplayOptions", "ReplaySummary", "parse_time", "run_replay"]


def run_replay(
    settings: Settings, opts: ReplayOptions, progress: Counter | None = None
) -> ReplaySummary:
    """Do one replay; the CLI and tests call this.

    Raises:
        ConfigurationError: not exactly one action, an unknown topic or format.
        DataNotFound, InvalidRange: nothing to read in the range.
    """
    from streams.replay import ReplayRange
    from streams.topics import Topics

    actions = [a for a in (opts.export, opts.publish, opts.policy) if a]
    if len(actions) != 1:
        raise ConfigurationError("choose exactly one of --export, --publish or --policy")
    topics = Topics(settings)
    spec = resolve_topic(topics, opts.topic)
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
        return run_counterfactual(settings, topics, spec, rng, root, opts, summary, counted)
    messages = non_empty(
        read_range(settings, spec, rng, opts.source, root, counted, summary), spec.name
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
    summary.topic = spec.name
    return summary
