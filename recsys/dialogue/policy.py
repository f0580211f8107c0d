"""The elicitation policy: each turn, ask the most informative question or recommend.

Recommend when any of these holds (the ``reason`` the reply carries):

* ``just_show_me`` — the user took the way out (the words, or ``show_now``);
* ``turn_limit`` — the conversation has had ``max_questions`` questions;
* ``enough_signals`` — it knows enough: ``min_signals`` preferences for a cold user,
  one fewer for a warming user, two fewer (at least one) for a warm one — what the
  user's history already says replaces questions;
* ``few_candidates`` — at most ``k`` candidates are left: nothing to narrow;
* ``no_informative_question`` — no attribute not yet asked or settled splits the
  candidates by at least ``min_information`` bits.

Otherwise ask about the attribute of highest expected information
(:func:`recsys.dialogue.attributes.split`); an attribute asked once is never asked again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from recsys.dialogue.attributes import ATTRIBUTES, QUESTIONS, Split, split
from recsys.dialogue.signals import DialogueState
from recsys.items.model import ItemRecord
from recsys.records import DialogueAction, SignalKind, WarmthBucket

__all__ = ["Decision", "PolicyConfig", "decide", "needed_signals"]


@dataclass(frozen=True)
class PolicyConfig:
    """Bounds of the elicitation."""

    min_signals: int = 3
    max_questions: int = 3
    min_information: float = 0.5
    attributes: tuple[str, ...] = ATTRIBUTES


@dataclass(frozen=True)
class Decision:
    """Ask (``split`` says about what) or recommend, and why."""

    action: DialogueAction
    reason: str
    split: Split | None = None

    @property
    def question(self) -> str | None:
        """The question's text (QUESTION only)."""
        return QUESTIONS[self.split.attribute] if self.split is not None else None


def needed_signals(warmth: WarmthBucket, config: PolicyConfig) -> int:
    """Preferences to gather before recommending: fewer the more history says."""
    drop = {WarmthBucket.COLD: 0, WarmthBucket.WARMING: 1, WarmthBucket.WARM: 2}[warmth]
    return max(1, config.min_signals - drop)


def _counted(state: DialogueState) -> int:
    """Preferences that narrow the catalog (negative phrases alone do not)."""
    return sum(1 for s in state.signals if s.kind is not SignalKind.NEGATIVE)


def decide(
    state: DialogueState,
    warmth: WarmthBucket,
    candidates: Sequence[ItemRecord],
    *,
    k: int,
    config: PolicyConfig,
) -> Decision:
    """The next action of the conversation ``state`` over ``candidates`` (best first)."""
    if state.show_now:
        return Decision(DialogueAction.RECOMMEND, "just_show_me")
    if state.questions >= config.max_questions:
        return Decision(DialogueAction.RECOMMEND, "turn_limit")
    if _counted(state) >= needed_signals(warmth, config):
        return Decision(DialogueAction.RECOMMEND, "enough_signals")
    if len(candidates) <= k:
        return Decision(DialogueAction.RECOMMEND, "few_candidates")
    done = set(state.asked) | state.settled
    wanted = [s.value for s in state.signals if s.kind is SignalKind.CATEGORY]
    best: Split | None = None
    for attribute in config.attributes:
        if attribute in done:
            continue
        found = split(attribute, candidates, wanted if attribute == "genre" else ())
        if len(found.options) < 2:
            continue
        if best is None or found.information > best.information + 1e-9:
            best = found
    if best is None or best.information < config.min_information:
        return Decision(DialogueAction.RECOMMEND, "no_informative_question")
    return Decision(DialogueAction.QUESTION, "asking", best)
