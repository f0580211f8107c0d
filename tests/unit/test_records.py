from __future__ import annotations

import pytest
from pydantic import ValidationError

from recsys.records import CatalogChange, ChangeOp, EventType, RecRequest, UserEvent


def test_rating_event_needs_a_rating() -> None:
    with pytest.raises(ValidationError, match="needs a rating"):
        UserEvent(user_id="u", event_type=EventType.RATING, item_id="i")


def test_item_events_need_an_item() -> None:
    with pytest.raises(ValidationError, match="needs an item_id"):
        UserEvent(user_id="u", event_type=EventType.CLICK)


def test_search_needs_a_query() -> None:
    with pytest.raises(ValidationError, match="non-empty query"):
        UserEvent(user_id="u", event_type=EventType.SEARCH, query="  ")


def test_upsert_needs_text_but_delete_does_not() -> None:
    with pytest.raises(ValidationError, match="title or a description"):
        CatalogChange(item_id="i", version=1)
    assert CatalogChange(item_id="i", version=2, op=ChangeOp.DELETE).op is ChangeOp.DELETE


def test_request_bounds() -> None:
    with pytest.raises(ValidationError):
        RecRequest(user_id="u", k=0)
    with pytest.raises(ValidationError):
        RecRequest(user_id="", k=3)
    with pytest.raises(ValidationError):
        RecRequest(user_id="u", unknown_field=1)  # type: ignore[call-arg]


def test_naive_timestamps_are_refused() -> None:
    from datetime import datetime

    with pytest.raises(ValidationError, match="timezone"):
        RecRequest(user_id="u", requested_at=datetime(2026, 1, 1))
