"""Archive files without Kafka: rolling, atomic placement, exactly-once after a crash,
commit hold-back, range reading, byte-exact re-encoding and exports."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro import reader as avro_reader

from recsys.archive import (
    ArchivedMessage,
    ArchiveWriter,
    export_messages,
    list_files,
    read_archive,
    read_avro_file,
)
from recsys.archive.layout import INPROGRESS_DIR
from recsys.records import FeedbackExample
from streams.serde import MAGIC_BYTE, AvroSerde
from streams.topics import TopicSpec
from streams.wire import archived_from_raw, schema_id_of_wire, wire_bytes

TOPIC = "t.feedback.examples"
DAY1 = int(datetime(2026, 1, 31, 23, 59, tzinfo=UTC).timestamp() * 1000)
DAY2 = int(datetime(2026, 2, 1, 0, 1, tzinfo=UTC).timestamp() * 1000)
SERDE = AvroSerde()
SCHEMA = SERDE.codec(FeedbackExample).schema


def example(n: int) -> FeedbackExample:
    return FeedbackExample(
        example_id=f"r{n}:i",
        request_id=f"r{n}",
        user_id="u1",
        item_id="i",
        rank=1,
        route="CF",
        warmth_bucket="WARM",
        llm_used=n % 2 == 0,
        propensity=1.0,
        clicked=n % 3 == 0,
        rating=4.0 if n % 5 == 0 else None,
        impression_at=datetime(2026, 1, 31, 12, tzinfo=UTC),
    )


def message(n: int, partition: int = 0, ts: int = DAY1) -> ArchivedMessage:
    record = example(n)
    raw = SERDE.encode(record, f"{TOPIC}-value")
    return ArchivedMessage(
        topic=TOPIC,
        partition=partition,
        offset=n,
        timestamp_ms=ts,
        key="u1",
        headers=[("traceparent", b"00-abc-def-01"), ("empty", b"")],
        schema_id=schema_id_of_wire(raw),
        value=record.model_dump(mode="python"),
        value_schema=SCHEMA,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def writer(root: Path, clock: Clock | None = None, roll_bytes: int = 1 << 20) -> ArchiveWriter:
    w = ArchiveWriter(root, roll_bytes=roll_bytes, roll_s=10.0, clock=clock or Clock())
    w.register(TOPIC, SCHEMA)
    return w


def test_files_appear_only_when_complete_and_roll_by_time_and_day(tmp_path: Path) -> None:
    clock = Clock()
    w = writer(tmp_path, clock)
    for n in range(3):
        assert w.write(message(n))
    assert list_files(tmp_path, TOPIC) == []  # still being written, under .inprogress
    assert len(list((tmp_path / INPROGRESS_DIR / TOPIC).glob("*.part"))) == 1
    # committable: nothing of partition 0 is durable yet
    assert w.committable({(TOPIC, 0): 3, (TOPIC, 1): 7}) == {(TOPIC, 0): 0, (TOPIC, 1): 7}
    clock.now = 9.9
    assert w.roll_due() == []
    clock.now = 10.0
    [path] = w.roll_due()
    assert path == tmp_path / TOPIC / "2026-01-31" / "p0000-000000000000-000000000002.avro"
    assert w.committable({(TOPIC, 0): 3}) == {(TOPIC, 0): 3}
    assert not list((tmp_path / INPROGRESS_DIR / TOPIC).glob("*.part"))
    # a record of the next UTC day starts a new file in the next day's folder
    w.write(message(3))
    w.write(message(4, ts=DAY2))
    w.close()
    names = [(f.path.parent.name, f.path.name) for f in list_files(tmp_path, TOPIC)]
    assert names == [
        ("2026-01-31", "p0000-000000000000-000000000002.avro"),
        ("2026-01-31", "p0000-000000000003-000000000003.avro"),
        ("2026-02-01", "p0000-000000000004-000000000004.avro"),
    ]


def test_roll_by_size(tmp_path: Path) -> None:
    w = writer(tmp_path, roll_bytes=1024)
    for n in range(40):
        w.write(message(n))
    w.close()
    files = list_files(tmp_path, TOPIC)
    assert len(files) > 2
    offsets = [m.offset for m in read_archive(tmp_path, TOPIC)]
    assert offsets == list(range(40))
    # consecutive files continue each other's offset range
    assert all(a.last_offset + 1 == b.first_offset for a, b in itertools.pairwise(files))


def test_a_restarted_writer_skips_what_is_archived_and_removes_unfinished_files(
    tmp_path: Path,
) -> None:
    first = writer(tmp_path)
    for n in range(5):
        first.write(message(n))
    first.close()  # 0..4 durable
    for n in range(5, 8):
        first.write(message(n))  # 5..7 in an unfinished file: the process "dies" here
    first._open[(TOPIC, 0)].fo.flush()
    assert list((tmp_path / INPROGRESS_DIR / TOPIC).glob("*.part"))
    other = tmp_path / INPROGRESS_DIR / TOPIC / "p0000-000000000099.part"
    other.write_bytes(b"half a file")  # any leftover of partition 0, whatever its name

    second = writer(tmp_path)  # Kafka re-delivers from the last commit (say offset 2)
    written = [second.write(message(n)) for n in range(2, 10)]
    assert written == [False, False, False, True, True, True, True, True]
    assert second.stats.skipped == 3
    second.close()
    assert not list((tmp_path / INPROGRESS_DIR / TOPIC).glob("*.part"))  # stale files gone
    assert [m.offset for m in read_archive(tmp_path, TOPIC)] == list(range(10))


def test_reading_ranges_and_partitions(tmp_path: Path) -> None:
    w = writer(tmp_path, roll_bytes=1024)
    for n in range(20):
        w.write(message(n, partition=n % 2, ts=DAY1 + n))
    w.close()
    assert [m.offset for m in read_archive(tmp_path, TOPIC, partitions={1})] == list(
        range(1, 20, 2)
    )
    got = read_archive(tmp_path, TOPIC, from_offset=4, to_offset=9)
    assert sorted(m.offset for m in got) == [4, 5, 6, 7, 8]
    got = read_archive(tmp_path, TOPIC, since_ms=DAY1 + 15, until_ms=DAY1 + 18)
    assert sorted(m.offset for m in got) == [15, 16, 17]
    assert list(read_archive(tmp_path, "t.missing")) == []


def test_wire_bytes_are_reproduced_exactly(tmp_path: Path) -> None:
    w = writer(tmp_path)
    for n in range(6):
        w.write(message(n))
    w.close()
    for m in read_archive(tmp_path, TOPIC):
        assert m.raw_value is None  # re-encoding reproduces the bytes: not stored twice
        assert wire_bytes(m) == SERDE.encode(example(m.offset), f"{TOPIC}-value")
        assert m.headers == [("traceparent", b"00-abc-def-01"), ("empty", b"")]
        assert m.key == "u1" and m.timestamp_ms == DAY1
        assert FeedbackExample.model_validate(m.value) == example(m.offset)
    # a message whose bytes cannot be re-encoded keeps them
    odd = ArchivedMessage(**{**message(0).__dict__, "raw_value": b"\x00\x00\x00\x00\x07zz"})
    assert wire_bytes(odd) == b"\x00\x00\x00\x00\x07zz"


@pytest.mark.parametrize("fmt", ["avro", "parquet", "csv"])
def test_exports(tmp_path: Path, fmt: str) -> None:
    messages = [message(n, partition=n % 2) for n in range(5)]
    path = tmp_path / f"out.{fmt}"
    assert export_messages(iter(messages), path, fmt) == 5
    if fmt == "avro":
        back = list(read_avro_file(path))
        assert [wire_bytes(m) for m in back] == [wire_bytes(m) for m in messages]
        with path.open("rb") as fo:  # any Avro reader sees the nested value
            assert next(iter(avro_reader(fo)))["value"]["example_id"] == "r0:i"  # type: ignore[index,call-overload]
    elif fmt == "parquet":
        table = pq.read_table(path)
        assert table.num_rows == 5
        assert table.column("offset").to_pylist() == [0, 1, 2, 3, 4]
        assert table.column("partition").to_pylist() == [0, 1, 0, 1, 0]
        assert table.column("example_id").to_pylist() == [f"r{n}:i" for n in range(5)]
        assert table.column("rating").to_pylist() == [4.0, None, None, None, None]
    else:
        with path.open(newline="") as fo:
            rows = list(csv.DictReader(fo))
        assert [r["example_id"] for r in rows] == [f"r{n}:i" for n in range(5)]
        assert rows[0]["key"] == "u1" and rows[0]["clicked"] == "True"
        assert json.loads(json.dumps(rows[0]))["topic"] == TOPIC
    with pytest.raises(ValueError, match="unknown export format"):
        export_messages(iter(messages), tmp_path / "x.json", "json")


def test_a_value_from_an_older_schema_keeps_its_original_bytes() -> None:
    older = dict(SCHEMA, fields=[f for f in SCHEMA["fields"] if f["name"] != "serve_latency_ms"])
    serde = AvroSerde()
    old_id = serde.registry.add(older)  # type: ignore[attr-defined]
    datum = {
        k: v for k, v in example(1).model_dump(mode="python").items() if k != "serve_latency_ms"
    }
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", MAGIC_BYTE, old_id))
    schemaless_writer(buf, parse_schema(older), datum)
    raw = buf.getvalue()
    spec = TopicSpec(
        base=TOPIC, name=TOPIC, key="user_id", value=FeedbackExample, partitions=1, description=""
    )
    archived = archived_from_raw(
        topic=TOPIC,
        partition=0,
        offset=0,
        timestamp_ms=DAY1,
        key=b"u1",
        headers=[],
        value=raw,
        spec=spec,
        serde=serde,
    )
    assert archived.schema_id == old_id
    assert archived.value["serve_latency_ms"] == 0.0  # read with today's schema
    assert archived.raw_value == raw and wire_bytes(archived) == raw
    # today's writer: no copy of the bytes is needed
    current = serde.encode(example(1), f"{TOPIC}-value")
    plain = archived_from_raw(
        topic=TOPIC,
        partition=0,
        offset=1,
        timestamp_ms=DAY1,
        key=b"u1",
        headers=[],
        value=current,
        spec=spec,
        serde=serde,
    )
    assert plain.raw_value is None and wire_bytes(plain) == current


def _writer(root: Path) -> ArchiveWriter:
    w = ArchiveWriter(root, roll_bytes=1 << 20, roll_s=60)
    w.register(TOPIC, SCHEMA)
    return w


def _in(topic_id: str | None, *ns: int, ts: int = DAY1) -> list[ArchivedMessage]:
    return [dataclasses.replace(message(n, ts=ts), topic_id=topic_id) for n in ns]


def test_a_recreated_topic_is_archived_as_a_new_incarnation(tmp_path: Path) -> None:
    """Offsets start again at 0 in a new incarnation: nothing of it is skipped."""
    from recsys.archive.incarnations import load_incarnations

    w = _writer(tmp_path)
    assert all(w.write(m) for m in _in("id-A", 0, 1, 2))
    w.close()
    w = _writer(tmp_path)  # a new process, the topic recreated (or the broker restarted)
    assert all(w.write(m) for m in _in("id-B", 0, 1, 2, 3))
    assert not w.write(_in("id-B", 2)[0])  # a redelivery within the new incarnation
    w.close()
    assert [(i.epoch, i.topic_id) for i in load_incarnations(tmp_path, TOPIC)] == [
        (0, "id-A"),
        (1, "id-B"),
    ]
    names = sorted(f.path.name for f in list_files(tmp_path, TOPIC))
    assert names == [
        "e0001-p0000-000000000000-000000000003.avro",
        "p0000-000000000000-000000000002.avro",
    ]
    assert [m.offset for m in read_archive(tmp_path, TOPIC)] == [0, 1, 2, 0, 1, 2, 3]
    assert w.stats.incarnations == 1 and w.stats.skipped == 1


def test_an_archive_without_incarnations_is_adopted_only_when_the_topic_continues_it(
    tmp_path: Path,
) -> None:
    for root, continues in ((tmp_path / "same", True), (tmp_path / "new", False)):
        w = _writer(root)
        for m in _in(None, 0, 1, 2):  # written before incarnations were recorded
            w.write(m)
        w.close()
        (root / TOPIC / "incarnations.json").unlink(missing_ok=True)
        w = _writer(root)
        # the same topic redelivers offset 2 (identical message); a new one starts at 0
        first = _in("id-X", 2)[0] if continues else _in("id-Y", 0, ts=DAY1 + 5)[0]
        assert w.write(first) is not continues
        w.close()
        epochs = {f.epoch for f in list_files(root, TOPIC)}
        assert epochs == ({0} if continues else {0, 1})
