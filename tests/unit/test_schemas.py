"""Contracts: every schema round-trips, matches its record class, and stays
backward compatible with every committed version."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import ClassVar

import pytest

from recsys import records as r
from streams.exceptions import SchemaCompatibilityError, SchemaDriftError
from streams.registry import LocalRegistry, load_avsc, schema_id_of
from streams.resources import SCHEMAS_DIR
from streams.schema_check import check_model, drift
from streams.serde import AvroSerde
from testkit.schema_compat import assert_backward_compatible, backward_problems, committed_versions
from workers.runtime import ALL_RECORDS

T = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)

SAMPLES: list[r.Record] = [
    r.CatalogChange(
        item_id="i1",
        version=3,
        title="Alien (1979)",
        categories=["Horror", "Sci-Fi"],
        description="In space no one can hear you scream.",
        attributes={"year": "1979"},
        available=False,
        occurred_at=T,
    ),
    r.CatalogChange(item_id="i1", version=4, op=r.ChangeOp.DELETE, occurred_at=T),
    r.ItemEnriched(
        item_id="i1",
        version=3,
        change_id="c",
        content_hash="ab",
        enrichment_status=r.EnrichmentStatus.CACHED,
        embedding_model="m",
        embedding_dim=384,
        prompt_version="p1",
        llm_model="sim",
        tags=["dark"],
        enriched_at=T,
    ),
    r.UserEvent(
        user_id="u",
        event_type=r.EventType.RATING,
        item_id="i1",
        rating=4.5,
        session_id="s",
        rec_request_id="q",
        occurred_at=T,
    ),
    r.UserEvent(user_id="u", event_type=r.EventType.SEARCH, query="a cosy mystery", occurred_at=T),
    r.RecRequest(
        user_id="u",
        k=5,
        query="space horror",
        exclude_item_ids=["i9"],
        context={"surface": "home"},
        deadline_ms=250,
        requested_at=T,
    ),
    r.RecRequest(
        user_id="u",
        k=5,
        requested_at=T,
        conversation=r.ConversationTurn(
            conversation_id="c1", turn=2, text="the 90s please", show_now=True
        ),
    ),
    r.RecResponse(
        request_id="q2",
        user_id="u",
        items=[],
        route=r.Route.CONTENT,
        warmth_bucket=r.WarmthBucket.COLD,
        propensity=1.0,
        llm_used=False,
        latency_ms=3.0,
        produced_at=T,
        conversation=r.DialogueReply(
            conversation_id="c1",
            turn=2,
            action=r.DialogueAction.QUESTION,
            question="What mood are you in?",
            attribute="mood",
            options=["funny", "dark"],
            candidates=12,
            signals=[
                r.PreferenceSignal(kind=r.SignalKind.CATEGORY, value="Comedy", turn=1),
                r.PreferenceSignal(
                    kind=r.SignalKind.LIKED_ITEM, value="Heat (1995)", turn=2, ref_item_id="m6"
                ),
            ],
            reason="asking",
            parser="llm",
        ),
    ),
    r.RecResponse(
        request_id="q",
        user_id="u",
        route=r.Route.HYBRID,
        warmth_bucket=r.WarmthBucket.WARMING,
        propensity=0.8,
        llm_used=True,
        llm_fallback_reason=None,
        model_version="als-1",
        prompt_version="p",
        llm_model="sim",
        embedding_model="m",
        latency_ms=12.5,
        produced_at=T,
        items=[
            r.RecommendedItem(
                item_id="i1",
                rank=1,
                score=0.7,
                source="als",
                explanation="Because you liked X",
                explanation_source=r.ExplanationSource.LLM,
                evidence=[
                    r.Evidence(kind=r.EvidenceKind.SIMILAR_TO_RECENT, value="X", ref_item_id="i0"),
                    r.Evidence(kind=r.EvidenceKind.STATED_PREFERENCE, value="Comedy", turn=1),
                ],
            )
        ],
    ),
    r.LlmInvolvement(
        request_id="q",
        user_id="u",
        use_case=r.LlmUseCase.RERANK,
        called=True,
        used=False,
        decision="called",
        tokens_in=120,
        tokens_out=30,
        latency_ms=80.0,
        cost_usd=0.0001,
        attempts=2,
        validation=r.ValidationResult.INVALID,
        validation_errors=["duplicate id"],
        hallucinated_ids=["zz"],
        injection_flagged=True,
        fallback=True,
        fallback_reason="schema_violation",
        route="CONTENT",
        propensity=1.0,
        occurred_at=T,
    ),
    r.FeedbackExample(
        example_id="q:i1",
        request_id="q",
        user_id="u",
        item_id="i1",
        rank=1,
        route="CF",
        warmth_bucket="WARM",
        llm_used=False,
        propensity=1.0,
        clicked=True,
        rating=5.0,
        attributed_by="request_id",
        impression_at=T,
        outcome_at=T,
        serve_latency_ms=3.0,
    ),
]


@pytest.mark.parametrize("record", SAMPLES, ids=lambda rec: type(rec).__name__)
def test_every_record_round_trips_through_the_wire_format(record: r.Record) -> None:
    serde = AvroSerde()
    data = serde.encode(record, "topic-value")
    assert data[0] == 0  # Confluent magic byte
    assert serde.decode(data, type(record)) == record


def test_every_topic_value_has_a_sample() -> None:
    covered = {type(s) for s in SAMPLES}
    nested = (
        r.Evidence,
        r.RecommendedItem,
        r.ConversationTurn,
        r.PreferenceSignal,
        r.DialogueReply,
    )
    assert {m for m in ALL_RECORDS if m not in nested} <= covered


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.__name__)
def test_record_classes_match_their_schema_files(model: type[r.Record]) -> None:
    assert drift(model) == []


def test_drift_is_detected() -> None:
    class Drifted(r.Record):
        avro_name: ClassVar[str] = "streamrec.Evidence"
        kind: r.EvidenceKind = r.EvidenceKind.OTHER
        value: int  # schema says string
        extra: str = ""  # not in the schema

    problems = drift(Drifted)  # type: ignore[type-abstract]
    assert any("value" in p and "str" in p for p in problems)
    assert any("extra" in p and "missing from the schema" in p for p in problems)
    assert any("ref_item_id" in p for p in problems)
    with pytest.raises(SchemaDriftError):
        check_model(Drifted)


def test_schema_ids_are_stable_and_distinct() -> None:
    ids = {m.avro_name: schema_id_of(load_avsc(m.avro_name)) for m in ALL_RECORDS}
    again = LocalRegistry()
    for name, schema_id in ids.items():
        assert again.schema_for(schema_id)["name"].endswith(name.split(".")[-1])
    assert len(set(ids.values())) == len(ids)


def test_every_field_is_documented() -> None:
    for path in SCHEMAS_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert schema.get("doc"), path.name
        for field in schema["fields"]:
            assert field.get("doc"), f"{path.name}:{field['name']}"


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.__name__)
def test_backward_compatible_with_every_committed_version(model: type[r.Record]) -> None:
    current = load_avsc(model.avro_name)
    versions = list(committed_versions(model.avro_name))
    for label, old in versions:
        assert backward_problems(current, old) == [], f"{model.avro_name} cannot read {label}"


def _user_event_schema() -> dict:  # type: ignore[type-arg]
    return load_avsc("streamrec.UserEvent")


def test_compat_checker_accepts_an_added_field_with_default() -> None:
    new = _user_event_schema()
    new["fields"].append({"name": "device", "type": "string", "default": "web", "doc": "d"})
    assert backward_problems(new, _user_event_schema()) == []


def test_compat_checker_rejects_an_added_field_without_default() -> None:
    new = _user_event_schema()
    new["fields"].append({"name": "device", "type": "string", "doc": "d"})
    with pytest.raises(SchemaCompatibilityError, match="device"):
        assert_backward_compatible(new, _user_event_schema(), "UserEvent")


def test_compat_checker_rejects_a_changed_type() -> None:
    new = _user_event_schema()
    for field in new["fields"]:
        if field["name"] == "event_id":
            field["type"] = "long"
    assert backward_problems(new, _user_event_schema())


def test_compat_checker_rejects_a_removed_enum_symbol() -> None:
    new = _user_event_schema()
    for field in new["fields"]:
        if field["name"] == "event_type":
            field["type"]["symbols"] = [s for s in field["type"]["symbols"] if s != "DISMISS"]
    assert backward_problems(new, _user_event_schema())
