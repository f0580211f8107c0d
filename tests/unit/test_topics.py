from __future__ import annotations

from streams.settings import Settings
from streams.topics import Topics


def test_names_carry_the_prefix_and_every_data_topic_has_a_dlq() -> None:
    topics = Topics(Settings(topic_prefix="acme."))
    data = topics.data_topics()
    assert [t.base for t in data] == [
        "catalog.changes",
        "catalog.enriched",
        "user.events",
        "rec.requests",
        "rec.responses",
        "rec.llm-log",
        "feedback.examples",
    ]
    for spec in data:
        assert spec.name == "acme." + spec.base
        assert spec.dlq is not None and spec.dlq.name == spec.name + ".dlq"
        assert spec.dlq.is_dlq and not spec.is_dlq
    assert len(list(topics)) == 14


def test_user_keyed_topics_share_the_partition_count() -> None:
    topics = Topics(Settings(user_partitions=6, catalog_partitions=3))
    for group in topics.co_partitioned():
        assert {t.partitions for t in group} == {6}
        assert {t.key for t in group} == {"user_id"}
    assert topics.catalog_changes.partitions == 3


def test_lookup_by_name() -> None:
    topics = Topics(Settings())
    assert topics.by_name("rec.llm-log").key == "request_id"
