from __future__ import annotations

import pytest

from recsys import records as r
from streams.exceptions import SerializationError
from streams.serde import AvroSerde
from streams.settings import Settings
from streams.topics import Topics
from testkit.poison import poison_messages


@pytest.fixture(scope="module")
def serde() -> AvroSerde:
    return AvroSerde()


@pytest.mark.parametrize("topic", [t.base for t in Topics(Settings()).data_topics()])
def test_poison_messages_fail_with_their_reason(serde: AvroSerde, topic: str) -> None:
    spec = next(t for t in Topics(Settings()).data_topics() if t.base == topic)
    assert spec.value is not None
    for reason, payload in poison_messages(spec, serde).items():
        with pytest.raises(SerializationError) as info:
            serde.decode(payload, spec.value)
        assert info.value.reason == reason


def test_empty_value_is_a_tombstone_error(serde: AvroSerde) -> None:
    with pytest.raises(SerializationError) as info:
        serde.decode(None, r.UserEvent)
    assert info.value.reason == "empty"


def test_invalid_value_message_names_the_field(serde: AvroSerde) -> None:
    spec = Topics(Settings()).rec_requests
    payload = poison_messages(spec, serde)["invalid_value"]
    with pytest.raises(SerializationError, match="k: Input should be greater than or equal to 1"):
        serde.decode(payload, r.RecRequest)


def test_reader_resolves_an_older_writer_schema() -> None:
    """A message written with an older schema (one field fewer) still decodes, with the default."""
    from streams.registry import LocalRegistry, load_avsc

    old = load_avsc("streamrec.RecRequest")
    old["fields"] = [f for f in old["fields"] if f["name"] != "context"]
    registry = LocalRegistry()
    registry.add(old)
    serde = AvroSerde(registry)
    import io
    import struct

    from fastavro import parse_schema, schemaless_writer

    from streams.registry import schema_id_of

    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    datum = {
        "request_id": "q",
        "user_id": "u",
        "k": 3,
        "query": None,
        "exclude_item_ids": [],
        "deadline_ms": 100,
        "requested_at": 0,
    }
    schemaless_writer(buf, parse_schema(old, _write_hint=False), datum)
    decoded = serde.decode(buf.getvalue(), r.RecRequest)
    assert decoded.context == {} and decoded.k == 3


@pytest.mark.parametrize(
    ("record", "where"),
    [
        (r.UserEvent(user_id="u\x00", event_type=r.EventType.SEARCH, query="q"), "user_id"),
        (r.RecRequest(user_id="u", context={"k": "v\x00"}), "context.k"),
        (r.RecRequest(user_id="u", context={"k\x00": "v"}), "context.k\\0"),
        (r.RecRequest(user_id="u", exclude_item_ids=["a", "b\x00"]), "exclude_item_ids.1"),
        (
            r.CatalogChange(item_id="i", version=1, title="t", categories=["ok", "x\x00"]),
            "categories.1",
        ),
    ],
)
def test_text_with_a_nul_character_is_an_invalid_value(
    serde: AvroSerde, record: r.Record, where: str
) -> None:
    """U+0000 is valid Avro but no Postgres text holds it: refused at the door, by path."""
    payload = serde.encode(record, "t-value")
    with pytest.raises(SerializationError, match="NUL") as info:
        serde.decode(payload, type(record))
    assert info.value.reason == "invalid_value"
    assert f": {where}: " in str(info.value)


@pytest.mark.parametrize("topic", [t.base for t in Topics(Settings()).data_topics()])
def test_every_poison_of_the_catalogue_fails_with_its_reason(serde: AvroSerde, topic: str) -> None:
    from testkit.poison import poison_catalogue

    spec = next(t for t in Topics(Settings()).data_topics() if t.base == topic)
    assert spec.value is not None
    kinds = set()
    for poison in poison_catalogue(spec, serde):
        kinds.add(poison.kind)
        if poison.kind == "store_refused":  # valid: only a database refuses it
            assert serde.decode(poison.value, spec.value) is not None
            continue
        with pytest.raises(SerializationError) as info:
            serde.decode(poison.value, spec.value)
        assert info.value.reason == poison.reason, poison.kind
    assert {"nul_text", "invalid_utf8", "oversized", "tombstone", "unknown_schema_id"} <= kinds
