"""PII redaction: what must go, and the numbers that must stay."""

from __future__ import annotations

import pytest

from recsys.serving.pii import luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("mail john.doe+films@example.co.uk today", "mail [EMAIL] today", {"email": 1}),
        ("call +44 20 7946 0958 now", "call [PHONE] now", {"phone": 1}),
        ("+1 (555) 123-4567", "[PHONE]", {"phone": 1}),
        ("(555) 123-4567 or 555-123-4567", "[PHONE] or [PHONE]", {"phone": 2}),
        ("555.123.4567", "[PHONE]", {"phone": 1}),
        ("ring 555-1234", "ring [PHONE]", {"phone": 1}),
        ("06 12 34 56 78", "[PHONE]", {"phone": 1}),
        ("020 7946 0958", "[PHONE]", {"phone": 1}),
        ("0049 30 1234567", "[PHONE]", {"phone": 1}),
        ("card 4111 1111 1111 1111", "card [CARD]", {"card": 1}),
        ("card 4111-1111-1111-1111", "card [CARD]", {"card": 1}),
        ("card 4111111111111111.", "card [CARD].", {"card": 1}),
        ("amex 3782 822463 10005", "amex [CARD]", {"card": 1}),
        (
            "me@a.io, +33 6 12 34 56 78, 5500 0000 0000 0004",
            "[EMAIL], [PHONE], [CARD]",
            {"email": 1, "phone": 1, "card": 1},
        ),
    ],
)
def test_pii_is_replaced_and_counted(text: str, expected: str, counts: dict[str, int]) -> None:
    redacted = redact(text)
    assert redacted.text == expected
    assert redacted.counts == counts
    assert redacted.found


@pytest.mark.parametrize(
    "text",
    [
        "something from 1995",
        "between 1980 and 1990",
        "1980-1990",
        "1980 1990 2000",
        "only $12.99 or €1 299",
        "item m123 and m4567890",
        "item 42",
        "released 2024-01-15",
        "top 10 action movies from 2005",
        "rated 3.5 stars, PG-13, 4K",
        "10 000 items",
        "ISBN 978-3-16-148410-0",
        "4111 1111 1111 1112",  # fails the Luhn check: not a card
        "at 10:30 on 12/05/2020",
        "no horror please",
    ],
)
def test_no_false_positives_on_ordinary_numbers(text: str) -> None:
    redacted = redact(text)
    assert redacted.text == text
    assert redacted.counts == {}
    assert not redacted.found


def test_luhn() -> None:
    assert luhn_ok("4111111111111111")
    assert luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def test_empty_text() -> None:
    assert redact("").text == ""


def test_full_width_digits_are_still_found() -> None:
    card = "４１１１ １１１１ １１１１ １１１１"  # noqa: RUF001
    assert redact(f"card {card}").text == "card [CARD]"
