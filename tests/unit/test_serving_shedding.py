"""Deadline shedding: the decision (the worker's clock, the grace, switched off), the
EXPIRED answer, and its schema evolution in both directions."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from recsys.records import RecRequest, RecResponse, ResponseStatus, Route, WarmthBucket
from recsys.serving.shedding import Shedder, expired_response, late_by_s
from streams.serde import AvroSerde
from testkit.schema_compat import backward_problems, committed_versions

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def request(age_s: float, deadline_ms: int = 1000, now: datetime = T0) -> RecRequest:
    return RecRequest(
        request_id="r1",
        user_id="u1",
        deadline_ms=deadline_ms,
        requested_at=now - timedelta(seconds=age_s),
    )


def test_lateness_is_age_by_the_workers_clock_minus_the_deadline() -> None:
    assert late_by_s(request(2.5), T0) == pytest.approx(1.5)
    assert late_by_s(request(0.2), T0) == pytest.approx(-0.8)


@pytest.mark.parametrize(
    ("age_s", "grace_s", "shed"),
    [
        (0.5, 0.1, False),  # well inside its deadline
        (1.05, 0.1, False),  # past the deadline, inside the grace
        (1.1, 0.1, False),  # exactly at deadline + grace: still served
        (1.2, 0.1, True),  # past deadline + grace
        (30.0, 0.1, True),  # a backlog left by an outage
        (30.0, 60.0, False),  # a grace that covers it
        (1.2, 0.0, True),  # no grace at all
    ],
)
def test_shed_only_past_deadline_plus_grace(age_s: float, grace_s: float, shed: bool) -> None:
    late = Shedder(grace_s=grace_s).lateness_s(request(age_s), now=T0)
    assert (late is not None) is shed
    if shed:
        assert late == pytest.approx(age_s - 1.0)


def test_requester_clock_ahead_never_sheds_early() -> None:
    # requested_at in the worker's future (the requester's clock runs ahead): age < 0
    assert Shedder(grace_s=0.0).lateness_s(request(-5.0), now=T0) is None


def test_switched_off_serves_everything_however_late() -> None:
    assert Shedder(enabled=False, grace_s=0.0).lateness_s(request(3600.0), now=T0) is None


def test_default_clock_is_now() -> None:
    fresh = RecRequest(user_id="u1", deadline_ms=1000)
    stale = RecRequest(
        user_id="u1", deadline_ms=1000, requested_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    shedder = Shedder(grace_s=0.1)
    assert shedder.lateness_s(fresh) is None
    assert shedder.lateness_s(stale) == pytest.approx(59.0, abs=1.0)


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace_s"):
        Shedder(grace_s=-0.1)


def test_shed_counts() -> None:
    shedder = Shedder()
    shedder.shed(0.5)
    shedder.shed(2.0)
    assert shedder.stats.expired == 2
    assert shedder.stats.late_s_total == pytest.approx(2.5)
    assert shedder.stats.late_s_max == pytest.approx(2.0)


def test_expired_answer_is_explicit_and_empty() -> None:
    r = request(31.0)
    response = expired_response(r, late_s=30.0, latency_ms=0.2)
    assert response.status is ResponseStatus.EXPIRED and response.expired
    assert response.request_id == r.request_id and response.user_id == r.user_id
    assert response.items == [] and not response.llm_used
    assert response.propensity == 0.0  # no decision of the logging policy was taken
    assert response.short_reason is not None and "30000 ms" in response.short_reason
    # a normal answer is OK by default, and not expired
    ok = RecResponse(
        request_id="r2",
        user_id="u1",
        items=[],
        route=Route.CF,
        warmth_bucket=WarmthBucket.WARM,
        propensity=1.0,
        llm_used=False,
        latency_ms=3.0,
    )
    assert ok.status is ResponseStatus.OK and not ok.expired


def test_expired_answer_survives_the_wire() -> None:
    response = expired_response(request(5.0), late_s=4.0, latency_ms=0.1)
    serde = AvroSerde()
    decoded = serde.decode(serde.encode(response, "t-value"), RecResponse)
    assert decoded == response and decoded.expired


def _versions_without_status() -> list[tuple[str, dict]]:
    return [
        (label, schema)
        for label, schema in committed_versions("streamrec.RecResponse")
        if "status" not in {f["name"] for f in schema["fields"]}
    ]


def test_older_readers_read_expired_answers_and_new_readers_read_old_ones() -> None:
    current = AvroSerde().codec(RecResponse).schema
    older = _versions_without_status()
    assert older, "the git history holds RecResponse versions from before the status field"
    label, previous = older[0]  # the newest version without it
    # forward: a consumer still on the previous schema reads what serve writes now
    assert backward_problems(reader=previous, writer=current) == [], label
    # backward: a response written before the field existed reads as OK
    old = {
        "request_id": "r0",
        "user_id": "u0",
        "items": [],
        "route": "CF",
        "warmth_bucket": "WARM",
        "propensity": 1.0,
        "llm_used": False,
        "latency_ms": 1.0,
        "produced_at": T0,
    }
    writer = parse_schema(previous, _write_hint=False)
    for field in previous["fields"]:
        if field["name"] not in old:
            old[field["name"]] = field.get("default")
    buf = io.BytesIO()
    schemaless_writer(buf, writer, old)
    buf.seek(0)
    value = schemaless_reader(buf, writer, parse_schema(current, _write_hint=False))
    assert isinstance(value, dict) and value["status"] == "OK"
    assert RecResponse.model_validate(value).status is ResponseStatus.OK


def test_operators_see_shedding_in_the_health_details(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from workers.observe import Observer

    observer = Observer("serve", make_settings(tmp_path))
    shedder = Shedder()
    assert observer.shedding_detail(shedder).startswith("no request shed")
    shedder.shed(2.0)
    shedder.shed(3.0)
    assert observer.shedding_detail(shedder) == (
        "2 request(s) shed as EXPIRED in the last minute, 2 since start"
    )
    assert "shedding off" in observer.shedding_detail(Shedder(enabled=False))
