"""`streamrec dlq`: look at a dead-letter topic, and re-publish what it parked, once.

Every consumer group dead-letters a bad message on its own (a poisoned ``user.events``
message is parked by users, feedback and archive), and a crash between a dead letter and
its commit sends it again. Replaying the topic record by record would therefore publish
the same input several times. Here letters are grouped by their source message
(:func:`streams.dlq_read.by_source`) and each source message is published once — to its
source topic by default, byte for byte, with its original key and headers plus
``replay.source`` naming where it first was. Workers are idempotent on ids and versions,
so a group that had accepted the message the first time changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobs.progress import Counter as ProgressCounter
from recsys.exceptions import ConfigurationError, InvalidRange

if TYPE_CHECKING:
    from streams.dlq_read import SourceMessage
    from streams.settings import Settings
    from streams.topics import TopicSpec

__all__ = ["DlqReplay", "DlqSummary", "inspect_dlq", "replay_dlq"]

#: Header naming the dead letter a replayed message came from.
REPLAY_DLQ_HEADER = "replay.dlq"


@dataclass
class DlqSummary:
    """What a dead-letter topic holds."""

    topic: str
    source_topic: str
    letters: int = 0
    sources: list[SourceMessage] = field(default_factory=list)
    #: Letters per reason, per consumer group.
    by_reason: Counter[str] = field(default_factory=Counter)
    by_group: Counter[str] = field(default_factory=Counter)

    @property
    def redeliveries(self) -> int:
        """Letters sent again for the same source by the same group (crash before commit)."""
        return sum(s.redeliveries for s in self.sources)


@dataclass
class DlqReplay:
    """What a replay did."""

    target: str
    published: int = 0
    letters: int = 0
    skipped_duplicates: int = 0
    dry_run: bool = False


def _specs(settings: Settings, name: str) -> tuple[TopicSpec, TopicSpec]:
    """``(source topic, its DLQ)`` for a name given with or without ``.dlq`` and prefix."""
    from streams.topics import DLQ_SUFFIX, Topics

    base = name.removesuffix(DLQ_SUFFIX)
    for spec in Topics(settings).data_topics():
        if base in (spec.base, spec.name) and spec.dlq is not None:
            return spec, spec.dlq
    known = ", ".join(t.base for t in Topics(settings).data_topics())
    raise ConfigurationError(f"unknown topic {name!r}; known: {known} (with or without .dlq)")


def inspect_dlq(settings: Settings, topic: str) -> DlqSummary:
    """Read ``topic``'s dead letters and group them by source message.

    Raises:
        ConfigurationError: an unknown topic.
        BrokerUnavailable: the DLQ topic does not exist or cannot be read.
    """
    from streams.dlq_read import by_source, read_dead_letters

    source, dlq = _specs(settings, topic)
    messages = read_dead_letters(settings, dlq.name)
    summary = DlqSummary(topic=dlq.name, source_topic=source.name, letters=len(messages))
    summary.sources = by_source(messages)
    for m in messages:
        summary.by_reason[m.letter.reason] += 1
        summary.by_group[m.letter.group or m.letter.worker] += 1
    return summary


def replay_dlq(
    settings: Settings,
    topic: str,
    *,
    reason: str | None = None,
    group: str | None = None,
    publish: str | None = None,
    dry_run: bool = False,
    progress: ProgressCounter | None = None,
) -> DlqReplay:
    """Publish each dead-lettered source message once (to its source topic by default).

    Only sources with a letter of ``reason`` / from ``group`` when those are given.

    Raises:
        ConfigurationError: an unknown topic, or a target that is the DLQ itself.
        InvalidRange: nothing in the DLQ matches.
    """
    from streams.producer import RecordProducer
    from streams.replay import REPLAY_SOURCE_HEADER, target_spec

    summary = inspect_dlq(settings, topic)
    source, dlq = _specs(settings, topic)
    chosen = [
        s
        for s in summary.sources
        if (reason is None or any(m.letter.reason == reason for m in s.letters))
        and (group is None or any(group in (m.letter.group, m.letter.worker) for m in s.letters))
    ]
    if not chosen:
        raise InvalidRange(
            f"no dead letters in {dlq.name}"
            + (f" with reason {reason}" if reason else "")
            + (f" from group {group}" if group else "")
        )
    if publish is not None and publish in (dlq.name, dlq.base):
        raise ConfigurationError("refusing to publish a DLQ replay into the DLQ it reads")
    target = source if publish is None else target_spec(publish, source.partitions)
    result = DlqReplay(
        target=target.name,
        letters=sum(len(s.letters) for s in chosen),
        skipped_duplicates=sum(len(s.letters) - 1 for s in chosen),
        dry_run=dry_run,
    )
    if dry_run:
        result.published = len(chosen)
        return result
    with RecordProducer(settings) as producer:
        if publish is not None:
            from streams import admin

            admin.ensure_topics(settings, [target])
        for entry in chosen:
            first = entry.first
            headers = [
                *first.headers,
                (REPLAY_SOURCE_HEADER, first.letter.source.encode()),
                (REPLAY_DLQ_HEADER, first.position.encode()),
            ]
            producer.send_raw(target, first.key, first.value, headers)
            result.published += 1
            if progress:
                progress(1)
        producer.flush()
    return result
