"""Topic administration: create the catalogue, check co-partitioning, probe the broker.

Every admin call carries a timeout; a broker that does not answer becomes a
:class:`BrokerUnavailable` with the address in the message, not a hang.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from streams.exceptions import BrokerUnavailable, PartitionMismatch
from streams.kafka import admin_config
from streams.settings import Settings
from streams.topics import Topics, TopicSpec

__all__ = [
    "TopicState",
    "check_co_partitioning",
    "describe_topics",
    "ensure_topics",
    "probe",
    "topic_ids",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicState:
    """What the broker says about one topic."""

    name: str
    partitions: int | None  # None: does not exist


def _admin(settings: Settings) -> AdminClient:
    # librdkafka logs connection errors itself; route them through logging quietly.
    return AdminClient(admin_config(settings, logger=logging.getLogger("librdkafka")))


def probe(settings: Settings, timeout_s: float | None = None) -> int:
    """Return the number of brokers answering at ``kafka_bootstrap``.

    Raises:
        BrokerUnavailable: nothing answered within the timeout.
    """
    timeout = timeout_s or settings.admin_timeout_s
    try:
        md = _admin(settings).list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerUnavailable(
            f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout:.0f}s "
            f"({exc.args[0].str() if exc.args else exc})"
        ) from exc
    return len(md.brokers)


def describe_topics(settings: Settings, names: Iterable[str]) -> list[TopicState]:
    """Partition counts of the named topics (None where a topic does not exist)."""
    try:
        md = _admin(settings).list_topics(timeout=settings.admin_timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot list topics at {settings.kafka_bootstrap}") from exc
    out = []
    for name in names:
        topic = md.topics.get(name)
        ok = topic is not None and topic.error is None
        out.append(TopicState(name, len(topic.partitions) if ok and topic else None))
    return out


def topic_ids(settings: Settings, names: Iterable[str]) -> dict[str, str | None]:
    """The Kafka topic id of each named topic: which *incarnation* of the name it is.

    A topic deleted and created again under the same name gets a new id (and offsets
    that restart at 0); so does every topic of the embedded broker, which keeps topics
    in memory, each time it starts. Positions kept outside Kafka are stored with it.
    None where the broker reports no id (the all-zero id of brokers before topic ids)
    or the topic does not exist.

    Raises:
        BrokerUnavailable: the broker did not answer within the admin timeout.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    client = _admin(settings)  # kept alive until the futures are resolved
    try:
        futures = client.describe_topics(
            TopicCollection(wanted), request_timeout=settings.admin_timeout_s
        )
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot describe topics at {settings.kafka_bootstrap}") from exc
    out: dict[str, str | None] = {}
    for name, future in futures.items():
        try:
            uuid = future.result(timeout=settings.admin_timeout_s + 5).topic_id
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                out[name] = None
                continue
            raise BrokerUnavailable(
                f"broker at {settings.kafka_bootstrap} did not describe {name}: {exc}"
            ) from exc
        zero = uuid is None or (
            uuid.get_most_significant_bits() == 0 and uuid.get_least_significant_bits() == 0
        )
        out[name] = None if zero else str(uuid)
    return out


def check_co_partitioning(settings: Settings, topics: Topics | None = None) -> None:
    """Refuse to run when co-partitioned topics differ in partition count.

    Raises:
        PartitionMismatch: names the topics and their counts.
    """
    topics = topics or Topics(settings)
    for group in topics.co_partitioned():
        states = describe_topics(settings, [t.name for t in group])
        counts = {s.name: s.partitions for s in states if s.partitions is not None}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{n}={c}" for n, c in counts.items())
            raise PartitionMismatch(
                f"topics keyed by the same user must have equal partition counts, found "
                f"{detail}; recreate them with STREAMREC_USER_PARTITIONS or "
                f"`kafka-topics --alter --partitions` before starting the workers"
            )


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec] | None = None) -> dict[str, str]:
    """Create missing topics; report ``{name: "created" | "exists"}``.

    Existing topics are left alone, then co-partitioning is checked, so a topic created
    earlier with another partition count is refused rather than silently mis-joined.
    """
    specs = list(specs if specs is not None else Topics(settings))
    admin = _admin(settings)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.replication_factor,
            config=dict(s.config),
        )
        for s in specs
    ]
    result: dict[str, str] = {}
    try:
        futures = admin.create_topics(
            new,
            operation_timeout=settings.admin_timeout_s,
            request_timeout=settings.admin_timeout_s,
        )
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot create topics at {settings.kafka_bootstrap}") from exc
    for name, future in futures.items():
        try:
            future.result(timeout=settings.admin_timeout_s + 5)
            result[name] = "created"
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            elif isinstance(err, KafkaError) and err.code() in (
                KafkaError._TRANSPORT,
                KafkaError._TIMED_OUT,
                KafkaError.REQUEST_TIMED_OUT,
            ):
                raise BrokerUnavailable(
                    f"broker at {settings.kafka_bootstrap} did not answer creating {name}"
                ) from exc
            else:
                raise
    check_co_partitioning(settings)
    created = sorted(n for n, s in result.items() if s == "created")
    if created:
        log.info("created %d topics: %s", len(created), ", ".join(created))
    return result
