from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streams import admin
from streams.exceptions import BrokerUnavailable, PartitionMismatch
from streams.settings import Settings
from streams.topics import Topics


def test_ensure_topics_creates_the_catalogue_with_partitions(kafka_settings: Settings) -> None:
    report = admin.ensure_topics(kafka_settings)
    topics = Topics(kafka_settings)
    assert set(report) == {t.name for t in topics}
    assert set(report.values()) == {"created"}
    states = {s.name: s.partitions for s in admin.describe_topics(kafka_settings, report)}
    for spec in topics:
        assert states[spec.name] == spec.partitions
    assert set(admin.ensure_topics(kafka_settings).values()) == {"exists"}


def test_mismatched_co_partitioning_is_refused(kafka_settings: Settings) -> None:
    topics = Topics(kafka_settings)
    client = AdminClient({"bootstrap.servers": kafka_settings.kafka_bootstrap})
    futures = client.create_topics([NewTopic(topics.rec_requests.name, 3, 1)])
    futures[topics.rec_requests.name].result(10)
    with pytest.raises(PartitionMismatch, match=r"rec\.requests=3"):
        admin.ensure_topics(kafka_settings)


def test_unreachable_broker_is_a_clear_error() -> None:
    s = Settings(bootstrap_servers="127.0.0.1:1", admin_timeout_s=1.0)
    with pytest.raises(BrokerUnavailable, match=r"no Kafka broker answered at 127\.0\.0\.1:1"):
        admin.probe(s)
