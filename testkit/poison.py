"""Known-bad messages for every input topic: garbage, a wrong schema id, and a
valid-Avro-but-invalid value. The dead-letter tests and the demo use them to show
that bad input is parked with its reason and never stops a worker.
"""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime
from typing import Any

from fastavro import schemaless_writer

from recsys.records import Record
from streams.serde import MAGIC_BYTE, AvroSerde
from streams.topics import TopicSpec

__all__ = ["INVALID_VALUES", "poison_messages"]

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
