"""The dialogue domain without I/O: what a turn says, the state folded from turns, the
questions' entropy, the policy's choices and the grounding of justifications."""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

from recsys.dialogue.attributes import QUESTIONS, labels, split
from recsys.dialogue.grounding import stated_evidence
from recsys.dialogue.policy import PolicyConfig, decide, needed_signals
from recsys.dialogue.reading import TurnParse, read_rules, reading_of
from recsys.dialogue.signals import DialogueState, Signal, StoredTurn
from recsys.items.model import ItemRecord
from recsys.records import DialogueAction, EvidenceKind, SignalKind, WarmthBucket
from recsys.serving.explanations import template_sentence

CATS = ["Comedy", "Drama", "Horror", "Sci-Fi", "Romance", "Thriller"]


def item(
    i: int, cats: tuple[str, ...], year: int, mood: str | None = None, **attrs: str
) -> ItemRecord:
    attributes = {"year": str(year), **attrs}
    if mood:
        attributes["mood"] = mood
    return ItemRecord(
        item_id=f"i{i}",
        version=1,
        change_id="c",
        content_hash="h",
        title=f"T{i}",
        categories=cats,
        attributes=attributes,
    )


def read(
    text: str, turn: int = 1, pending: str | None = None, options: list[str] | None = None
) -> list[tuple[str, str]]:
    parse = read_rules(text, CATS, pending=pending, options=options or [])
    reading = reading_of(parse, turn, pending=pending, options=options or [])
    return [(s.kind.value, s.value) for s in reading.signals]


def test_a_mood_word_that_only_repeats_a_genre_is_one_preference() -> None:
    assert read("something funny") == [("CATEGORY", "Comedy")]
    assert read("something dark and funny") == [("CATEGORY", "Comedy"), ("MOOD", "dark")]


def test_rules_read_preferences_of_every_kind() -> None:
    got = read("a sci-fi film from the 90s in French, no horror, short, something like heat")
    assert ("CATEGORY", "Sci-Fi") in got and ("NOT_CATEGORY", "Horror") in got
    assert ("ERA", "1990s") in got and ("CONSTRAINT", "in French") in got
    assert ("CONSTRAINT", "under 90 min") in got and ("LIKED_ITEM", "heat") in got


def test_wanting_is_not_having_liked() -> None:
    assert read("I'd like a comedy film") == [("CATEGORY", "Comedy")]
    assert ("LIKED_ITEM", "heat") in read("something like heat")
    assert ("LIKED_ITEM", "alien") in read("I loved alien")
    assert ("DISLIKED_ITEM", "alien") in read("I hated alien")


def test_answers_to_the_pending_question() -> None:
    eras = ["1970s", "1980s", "1990s", "2000s"]
    assert read("2", pending="era", options=eras) == [("ERA", "1980s")]
    assert read("the 90s please", pending="era", options=eras) == [("ERA", "1990s")]
    assert read("something older", pending="era", options=eras) == [("ERA", "1970s to 1980s")]
    assert read("feel good", pending="mood", options=["dark", "uplifting"]) == [
        ("MOOD", "uplifting")
    ]
    parse = read_rules("I don't mind", CATS, pending="mood", options=["dark", "funny"])
    assert reading_of(parse, 2, pending="mood", options=["dark", "funny"]).settled == ["mood"]
    assert read_rules("just show me", CATS).show_now
    assert read_rules("surprise me", CATS).show_now
    assert not read_rules("show me a comedy", CATS).show_now


def test_an_llm_answer_must_stay_inside_what_was_offered() -> None:
    context = {"categories": CATS, "options": ["dark", "funny"]}
    ok = TurnParse.model_validate({"categories": ["comedy"], "option": "dark"}, context=context)
    assert ok.categories == ["Comedy"]  # the catalog's spelling
    for bad in (
        {"categories": ["Western"]},
        {"option": "cozy"},
        {"moods": ["sleepy"]},
        {"language": "Klingon"},
        {"year_min": 2000, "year_max": 1990},
    ):
        with pytest.raises(ValidationError):
            TurnParse.model_validate(bad, context=context)


def turn(
    n: int,
    *signals: Signal,
    action: DialogueAction = DialogueAction.QUESTION,
    asked: str | None = None,
    settled: tuple[str, ...] = (),
) -> StoredTurn:
    return StoredTurn(
        turn=n,
        request_id=f"r{n}",
        signals=list(signals),
        action=action,
        asked=asked,
        settled=list(settled),
    )


def test_the_state_is_a_fold_where_later_turns_win() -> None:
    comedy = Signal(kind=SignalKind.CATEGORY, value="Comedy", turn=1, hard=True)
    nineties = Signal(kind=SignalKind.ERA, value="1990s", turn=2, low=1990, high=1999, hard=True)
    later = Signal(kind=SignalKind.ERA, value="2010s", turn=3, low=2010, high=2019, hard=True)
    no_comedy = Signal(kind=SignalKind.NOT_CATEGORY, value="comedy", turn=3, hard=True)
    state = DialogueState("u", "c", [turn(2, nineties, asked="mood"), turn(1, comedy, asked="era")])
    assert [s.turn for s in state.signals] == [1, 2]
    assert state.asked == ["era", "mood"] and state.pending == "mood"
    assert state.settled == {"genre", "era"}
    filters = state.filters()
    assert filters is not None and filters.ranges == {"year": (1990.0, 1999.0)}
    after = state.with_turn(turn(3, later, no_comedy, action=DialogueAction.RECOMMEND))
    assert [(s.kind.value, s.value) for s in after.signals] == [
        ("ERA", "2010s"),
        ("NOT_CATEGORY", "comedy"),
    ]
    assert after.pending is None and state.before(2).signals == [comedy]
    # the same turn stored twice is one turn
    assert len(after.with_turn(turn(3, later)).turns) == 3


def test_entropy_of_a_split() -> None:
    items = [item(i, ("Comedy",), 1970 + 10 * (i % 4)) for i in range(40)]
    era = split("era", items)
    assert era.options == ["1970s", "1980s", "1990s", "2000s"]
    assert era.entropy == pytest.approx(2.0) and era.coverage == 1.0
    genre = split("genre", items)
    assert genre.entropy == 0.0 and genre.options == ["Comedy"]
    assert split("mood", items).information == 0.0  # the catalog has no moods
    half = [*items[:20], *(item(100 + i, ("Drama",), 1990) for i in range(20))]
    assert split("genre", half, exclude=["Comedy"]).coverage == 0.5


def _pool() -> list[ItemRecord]:
    rng = random.Random(3)
    moods = ["dark", "funny", "cozy", "tense"]
    return [
        item(i, (rng.choice(CATS),), rng.randint(1970, 2020), rng.choice(moods), language="en")
        for i in range(200)
    ]


def test_the_policy_asks_the_most_informative_question_once() -> None:
    pool, config = _pool(), PolicyConfig()
    state = DialogueState("u", "c", [turn(1, action=DialogueAction.RECOMMEND)])
    first = decide(state, WarmthBucket.COLD, pool, k=5, config=config)
    splits = {a: split(a, pool).information for a in ("genre", "era", "mood", "language")}
    assert first.action is DialogueAction.QUESTION
    assert first.split is not None and first.split.attribute == max(splits, key=splits.get)  # type: ignore[arg-type]
    assert splits["language"] == 0.0 and first.question == QUESTIONS[first.split.attribute]
    asked = state.with_turn(turn(1, asked=first.split.attribute))
    second = decide(
        asked.with_turn(turn(2, action=DialogueAction.RECOMMEND)),
        WarmthBucket.COLD,
        pool,
        k=5,
        config=config,
    )
    assert second.split is not None and second.split.attribute != first.split.attribute


@pytest.mark.parametrize(
    ("warmth", "needed"),
    [(WarmthBucket.COLD, 3), (WarmthBucket.WARMING, 2), (WarmthBucket.WARM, 1)],
)
def test_warmer_users_need_fewer_preferences(warmth: WarmthBucket, needed: int) -> None:
    assert needed_signals(warmth, PolicyConfig()) == needed
    one = Signal(kind=SignalKind.CATEGORY, value="Comedy", turn=1, hard=True)
    state = DialogueState("u", "c", [turn(1, one, action=DialogueAction.RECOMMEND)])
    decision = decide(state, warmth, _pool(), k=5, config=PolicyConfig())
    assert (decision.action is DialogueAction.RECOMMEND) == (needed == 1)


def test_ways_to_stop_asking() -> None:
    pool, config = _pool(), PolicyConfig(max_questions=2)
    shown = StoredTurn(turn=1, request_id="r", action=DialogueAction.RECOMMEND, show_now=True)
    assert (
        decide(DialogueState("u", "c", [shown]), WarmthBucket.COLD, pool, k=5, config=config).reason
        == "just_show_me"
    )
    two = DialogueState(
        "u",
        "c",
        [turn(1, asked="era"), turn(2, asked="mood"), turn(3, action=DialogueAction.RECOMMEND)],
    )
    assert decide(two, WarmthBucket.COLD, pool, k=5, config=config).reason == "turn_limit"
    fresh = DialogueState("u", "c", [turn(1, action=DialogueAction.RECOMMEND)])
    assert decide(fresh, WarmthBucket.COLD, pool[:5], k=5, config=config).reason == "few_candidates"
    same = [item(i, ("Comedy",), 1995, "dark", language="en") for i in range(50)]
    assert (
        decide(fresh, WarmthBucket.COLD, same, k=5, config=config).reason
        == "no_informative_question"
    )


def test_justifications_cite_only_given_signals_the_item_satisfies() -> None:
    rng = random.Random(5)
    pool = _pool()
    for _ in range(200):
        signals = [
            Signal(kind=SignalKind.CATEGORY, value=rng.choice(CATS), turn=1, hard=True),
            Signal(kind=SignalKind.ERA, value="1990s", turn=2, low=1990, high=1999, hard=True),
            Signal(kind=SignalKind.MOOD, value=rng.choice(["dark", "funny"]), turn=3, key="mood"),
            Signal(kind=SignalKind.NEGATIVE, value="gore", turn=3),
        ][: rng.randint(0, 4)]
        target = rng.choice(pool)
        evidence = stated_evidence(target, signals)
        assert all(e.kind is EvidenceKind.STATED_PREFERENCE for e in evidence)
        given = {s.turn for s in signals}
        for e in evidence:
            assert e.turn in given
            signal = next(s for s in signals if s.turn == e.turn)
            if signal.kind is SignalKind.CATEGORY:
                assert e.value in target.categories
            if signal.kind is SignalKind.ERA:
                assert 1990 <= int(target.attributes["year"]) <= 1999
            if signal.kind is SignalKind.MOOD:
                assert signal.value in labels("mood", target)
            assert signal.kind is not SignalKind.NEGATIVE  # cannot be checked: never cited
        if evidence:
            sentence = template_sentence(evidence)
            assert sentence.startswith("Matches what you told me:")
            assert all(e.value in sentence for e in evidence)


def test_era_evidence_names_the_year() -> None:
    era = Signal(kind=SignalKind.ERA, value="1990s", turn=2, low=1990, high=1999, hard=True)
    (fact,) = stated_evidence(item(1, ("Comedy",), 1994), [era])
    assert (fact.value, fact.turn) == ("1990s (1994)", 2)
    assert stated_evidence(item(2, ("Comedy",), 1989), [era]) == []
    assert math.isclose(len(stated_evidence(None, [era])), 0)
