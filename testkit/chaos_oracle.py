"""The checks of the fault suite: what the stack stored and emitted against an offline
recomputation of what :class:`~testkit.chaos_load.ChaosLoad` published.

* user state: :func:`recsys.users.state.fold` of every valid event in publish order,
  compared user by user with ``user_state`` (events missing → lost, counted twice →
  doubled, any other difference → ``state_differs``);
* ``user_events``: each distinct event id stored (missing → lost);
* catalog: each item's last published version (and deletion) in ``items``;
* requests: each answered at least once (never → lost; more → recognisable redeliveries,
  keyed by ``request_id``);
* poison: a dead letter per consuming group, matched by source topic, partition, offset
  and value digest (none → lost; more than one → redeliveries).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import psycopg

from recsys.users.state import UserState, UserStateConfig, fold
from streams.dlq import DeadLetter
from streams.settings import Settings
from testkit.chaos_load import ChaosLoad, SentPoison

__all__ = ["Verdict", "check_all"]


@dataclass
class Verdict:
    """Counts of the checks, and their detail for the report."""

    lost: Counter[str] = field(default_factory=Counter)
    doubled: Counter[str] = field(default_factory=Counter)
    redeliveries: Counter[str] = field(default_factory=Counter)
    state_differs: int = 0
    dead_lettered: int = 0
    answered: int = 0
    requests: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 12:
            self.examples.append(text)


def _users(dsn: str, load: ChaosLoad, settings: Settings, verdict: Verdict) -> None:
    expected = fold(load.events, UserStateConfig.from_settings(settings.users))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT user_id, version, state::text FROM user_state").fetchall()
        stored_ids = {r[0] for r in conn.execute("SELECT event_id FROM user_events")}
    got = {r[0]: (int(r[1]), UserState.model_validate_json(r[2])) for r in rows}
    for user, state in expected.items():
        version, stored = got.get(user, (0, None))
        if version < state.events:
            verdict.lost["user_events_applied"] += state.events - version
            verdict.note(f"user {user[:20]}: {version} events applied, {state.events} expected")
        elif version > state.events:
            verdict.doubled["user_events_applied"] += version - state.events
            verdict.note(f"user {user[:20]}: {version} events applied, {state.events} expected")
        elif stored is not None and stored.without_dedup() != state.without_dedup():
            verdict.state_differs += 1
            verdict.note(f"user {user[:20]}: state differs from the offline fold")
    missing = {e.event_id for e in load.events} - stored_ids
    verdict.lost["user_events_stored"] += len(missing)
    if missing:
        verdict.note(f"{len(missing)} event ids not in user_events, e.g. {sorted(missing)[:3]}")


def _catalog(dsn: str, load: ChaosLoad, verdict: Verdict) -> None:
    with psycopg.connect(dsn) as conn:
        rows = {
            r[0]: (int(r[1]), bool(r[2]))
            for r in conn.execute("SELECT item_id, version, deleted FROM items")
        }
    for item, (version, deleted) in load.catalog.items():
        if rows.get(item) != (version, deleted):
            verdict.lost["catalog_versions"] += 1
            verdict.note(f"item {item}: stored {rows.get(item)}, expected {(version, deleted)}")


def _requests(load: ChaosLoad, answers: dict[str, list[float]], verdict: Verdict) -> None:
    verdict.requests = len(load.requests)
    for rid in load.requests:
        n = len(answers.get(rid, []))
        if n == 0:
            verdict.lost["requests_unanswered"] += 1
            verdict.note(f"request {rid} never answered")
        else:
            verdict.answered += 1
            verdict.redeliveries["responses"] += n - 1


def _poison(
    load: ChaosLoad,
    letters: list[tuple[int, DeadLetter]],
    consumers: dict[str, list[tuple[str, str]]],
    verdict: Verdict,
) -> None:
    """``consumers``: topic → [(worker, group)] reading it."""
    index: Counter[tuple[int, str, int, int, str, str]] = Counter()
    for incarnation, letter in letters:
        key = (incarnation, letter.topic, letter.partition, letter.offset, letter.sha256)
        index[(*key, letter.group)] += 1
    for sent in load.poisons:
        where = sent.where
        if where.partition < 0:
            verdict.lost["poison_not_delivered"] += 1
            continue
        for worker, group in _expected_groups(sent, consumers):
            n = index[
                (where.incarnation, sent.topic, where.partition, where.offset, sent.digest, group)
            ]
            if n == 0:
                verdict.lost["poison_not_dead_lettered"] += 1
                verdict.note(f"{sent.poison.kind} on {sent.topic}: no dead letter from {worker}")
            else:
                verdict.dead_lettered += 1
                verdict.redeliveries["dead_letters"] += n - 1


def _expected_groups(
    sent: SentPoison, consumers: dict[str, list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    readers = consumers.get(sent.topic, [])
    if sent.poison.refused_by:
        return [(w, g) for w, g in readers if w in sent.poison.refused_by]
    return readers


def check_all(
    dsn: str,
    load: ChaosLoad,
    settings: Settings,
    answers: dict[str, list[float]],
    letters: list[tuple[int, DeadLetter]],
    consumers: dict[str, list[tuple[str, str]]],
) -> Verdict:
    """Every check; the caller prints the verdict."""
    verdict = Verdict()
    _users(dsn, load, settings, verdict)
    _catalog(dsn, load, verdict)
    _requests(load, answers, verdict)
    _poison(load, letters, consumers, verdict)
    return verdict
