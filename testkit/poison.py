"""Known-bad messages for every input topic. :func:`poison_messages` has the four
classic ones (garbage, a wrong schema id, corrupt Avro, a valid-Avro-but-invalid value);
:func:`poison_catalogue` every kind the fault suite publishes (NUL text, invalid UTF-8,
oversized values, tombstones, a record the database refuses). The dead-letter tests,
the demo and ``benchmarks/chaos.py`` use them to show that bad input is parked with its
reason and never stops a worker.
"""

from __future__ import annotations

import io
import random
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastavro import schemaless_writer

from recsys.records import EventType, Record, UserEvent
from streams.serde import MAGIC_BYTE, AvroSerde
from streams.topics import TopicSpec

__all__ = ["INVALID_VALUES", "Poison", "astral_text", "poison_catalogue", "poison_messages"]

_NOW = datetime(2026, 1, 1, tzinfo=UTC)

#: Per record type: a dict that encodes as valid Avro but breaks the record's rules.
INVALID_VALUES: dict[str, dict[str, Any]] = {
    "streamrec.CatalogChange": {
        # an UPSERT with nothing to embed, and a negative version
        "change_id": "bad-1",
        "item_id": "item-x",
        "version": -3,
        "op": "UPSERT",
        "title": "",
        "categories": [],
        "description": "",
        "attributes": {},
        "available": True,
        "occurred_at": _NOW,
    },
    "streamrec.UserEvent": {
        # a RATING without a rating
        "event_id": "bad-1",
        "user_id": "u-x",
        "event_type": "RATING",
        "item_id": "item-x",
        "rating": None,
        "query": None,
        "session_id": None,
        "rec_request_id": None,
        "occurred_at": _NOW,
    },
    "streamrec.RecRequest": {
        # k must be 1..100
        "request_id": "bad-1",
        "user_id": "u-x",
        "k": 0,
        "query": None,
        "exclude_item_ids": [],
        "context": {},
        "deadline_ms": 500,
        "requested_at": _NOW,
    },
    "streamrec.RecResponse": {
        "request_id": "bad-1",
        "user_id": "u-x",
        "items": [],
        "route": "CF",
        "warmth_bucket": "WARM",
        "propensity": 7.5,
        "llm_used": False,
        "llm_fallback_reason": None,
        "policy": "production",
        "model_version": None,
        "prompt_version": None,
        "llm_model": None,
        "embedding_model": None,
        "latency_ms": -1.0,
        "produced_at": _NOW,
    },
    "streamrec.ItemEnriched": {
        "item_id": "",
        "version": -1,
        "change_id": "",
        "deleted": False,
        "content_hash": "",
        "enrichment_status": "LLM_OFF",
        "embedding_model": "",
        "embedding_dim": 0,
        "prompt_version": None,
        "llm_model": None,
        "tags": [],
        "enriched_at": _NOW,
    },
    "streamrec.LlmInvolvement": {
        "record_id": "bad-1",
        "request_id": "",
        "user_id": None,
        "item_id": None,
        "use_case": "RERANK",
        "called": True,
        "used": True,
        "decision": "called",
        "prompt_version": None,
        "model": None,
        "tokens_in": -5,
        "tokens_out": 0,
        "latency_ms": 0.0,
        "cost_usd": 0.0,
        "cache_hit": False,
        "attempts": 0,
        "validation": "VALID",
        "validation_errors": [],
        "hallucinated_ids": [],
        "injection_flagged": False,
        "fallback": False,
        "fallback_reason": None,
        "route": None,
        "propensity": None,
        "occurred_at": _NOW,
    },
    "streamrec.FeedbackExample": {
        "example_id": "bad-1",
        "request_id": "r",
        "user_id": "u",
        "item_id": "i",
        "rank": 0,
        "route": "CF",
        "warmth_bucket": "WARM",
        "llm_used": False,
        "prompt_version": None,
        "llm_model": None,
        "model_version": None,
        "propensity": 2.0,
        "clicked": False,
        "carted": False,
        "purchased": False,
        "dismissed": False,
        "rating": None,
        "attributed_by": "none",
        "impression_at": _NOW,
        "outcome_at": None,
        "serve_latency_ms": 0.0,
    },
}


def _encode_raw(
    serde: AvroSerde, model: type[Record], subject: str, datum: dict[str, Any]
) -> bytes:
    codec = serde.codec(model)
    schema_id = serde.registry.id_for(subject, codec.schema)
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", MAGIC_BYTE, schema_id))
    schemaless_writer(buf, codec.parsed, datum)
    return buf.getvalue()


def poison_messages(spec: TopicSpec, serde: AvroSerde) -> dict[str, bytes]:
    """``{expected dead-letter reason: message bytes}`` for a value topic."""
    assert spec.value is not None
    valid_avro_invalid_value = _encode_raw(
        serde, spec.value, spec.subject, INVALID_VALUES[spec.value.avro_name]
    )
    wrong_id = struct.pack(">bI", MAGIC_BYTE, 424242) + valid_avro_invalid_value[5:]
    return {
        "bad_magic_byte": b"\x7b\x22not\x22: \x22avro\x22}",  # JSON, not Confluent Avro
        "unknown_schema_id": wrong_id,
        "invalid_value": valid_avro_invalid_value,
        "avro_decode_failed": struct.pack(
            ">bI", MAGIC_BYTE, serde.registry.id_for(spec.subject, serde.codec(spec.value).schema)
        )
        + b"\xff\xff\xff",
    }


@dataclass(frozen=True)
class Poison:
    """One hostile message for a topic and what must become of it.

    ``reason`` is the dead-letter reason every consuming worker gives it at decode, except
    for ``store_refused``: a valid record whose values Postgres refuses in the stores of
    the workers in ``refused_by`` only (the others accept it as an ordinary record).
    """

    kind: str
    value: bytes | None
    reason: str
    key: str = "poison"
    refused_by: frozenset[str] = field(default_factory=frozenset)


def astral_text(n: int, seed: int) -> str:
    """``n`` random 4-byte UTF-8 characters (incompressible, within a 512-character id):
    two of them in one btree index row exceed Postgres's 2,704-byte limit."""
    rng = random.Random(seed)
    return "".join(chr(rng.randint(0x10000, 0x10FFFF)) for _ in range(n))


#: An id (an Avro string, at most 512 characters) in each record, in order of preference.
_ID_FIELDS = ("event_id", "change_id", "request_id", "record_id", "example_id", "item_id")


def _first_text_field(datum: dict[str, Any]) -> str:
    return next(k for k in _ID_FIELDS if k in datum)


_PLACEHOLDER = "PLACEHOLDER-0123456789"


def poison_catalogue(spec: TopicSpec, serde: AvroSerde, seed: int = 0) -> list[Poison]:
    """Every kind of bad message for a value topic: garbage, a truncated header, an
    unknown schema id, corrupt Avro, a value breaking the record's rules, text holding
    NUL (valid Avro that no Postgres text stores), invalid UTF-8 (a CESU-8 surrogate),
    an oversized value (100 kB in a 512-character field), a tombstone — and, on
    ``user.events``, a valid event whose key Postgres refuses in the feedback store."""
    assert spec.value is not None
    classic = poison_messages(spec, serde)
    base = dict(INVALID_VALUES[spec.value.avro_name])
    text_field = _first_text_field(base)
    out = [
        Poison("garbage", classic["bad_magic_byte"], "bad_magic_byte"),
        Poison("truncated", b"\x00\x00", "bad_magic_byte"),
        Poison("unknown_schema_id", classic["unknown_schema_id"], "unknown_schema_id"),
        Poison("corrupt_avro", classic["avro_decode_failed"], "avro_decode_failed"),
        Poison("invalid_value", classic["invalid_value"], "invalid_value"),
        Poison(
            "nul_text",
            _encode_raw(
                serde, spec.value, spec.subject, base | {text_field: f"nul-{seed}\x00text"}
            ),
            "invalid_value",
        ),
        Poison("oversized", _oversized(serde, spec, base, text_field), "invalid_value"),
        Poison("tombstone", None, "empty"),
    ]
    encoded = _encode_raw(serde, spec.value, spec.subject, base | {text_field: _PLACEHOLDER})
    at = encoded.index(_PLACEHOLDER.encode())
    bad = b"\xed\xa0\x80" + b"x" * (len(_PLACEHOLDER) - 3)  # same length: a valid Avro frame
    out.append(
        Poison("invalid_utf8", encoded[:at] + bad + encoded[at + len(bad) :], "avro_decode_failed")
    )
    if spec.value is UserEvent:
        event = UserEvent(
            event_id=astral_text(512, 2 * seed),
            user_id=astral_text(512, 2 * seed + 1),
            event_type=EventType.CLICK,
            item_id=f"poison-item-{seed}",
        )
        out.append(
            Poison(
                "store_refused",
                serde.encode(event, spec.subject),
                "store_rejected",
                key=event.user_id,
                refused_by=frozenset({"feedback"}),
            )
        )
    return out


def _oversized(serde: AvroSerde, spec: TopicSpec, base: dict[str, Any], text_field: str) -> bytes:
    assert spec.value is not None
    return _encode_raw(serde, spec.value, spec.subject, base | {text_field: "x" * 100_000})
