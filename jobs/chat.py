"""A terminal conversation with the running serve worker: turns over the request and
response topics, titles from the item store, LLM involvement from ``rec.llm-log``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from recsys.exceptions import DatabaseUnavailable
from recsys.records import LlmInvolvement, RecResponse
from streams.client import Conversation, RecClient
from streams.settings import Settings

__all__ = ["ChatSession", "ChatTurn", "item_titles"]


def item_titles(dsn: str | None, item_ids: Sequence[str]) -> dict[str, str]:
    """Titles of items (empty without a database: the ids are shown instead)."""
    if dsn is None or not item_ids:
        return {}
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT item_id, title FROM items WHERE item_id = ANY(%s)", (list(item_ids),)
            ).fetchall()
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"cannot read item titles: {exc}") from exc
    return {r[0]: r[1] or r[0] for r in rows}


@dataclass(frozen=True)
class ChatTurn:
    """One reply and what explains it."""

    response: RecResponse
    titles: dict[str, str] = field(default_factory=dict)
    logs: list[LlmInvolvement] = field(default_factory=list)


class ChatSession:
    """One user's conversations; ``new()`` starts another."""

    def __init__(self, settings: Settings, user_id: str, *, k: int = 5) -> None:
        self.settings, self.user_id, self.k = settings, user_id, k
        self.client = RecClient(settings, llm_log=True)
        self.dsn = settings.database_url.get_secret_value() if settings.database_url else None
        self.conversation = Conversation(self.client, user_id, k=k)

    def start(self) -> ChatSession:
        """Pin the topics (a broker that is not there is a clear error)."""
        self.client.start()
        return self

    def new(self) -> None:
        """Forget the conversation; the next turn starts another."""
        self.conversation = Conversation(self.client, self.user_id, k=self.k)

    def say(self, text: str, *, show_now: bool = False, timeout_s: float = 15.0) -> ChatTurn:
        """Send a turn; the reply with item titles and the turn's LLM-log records."""
        response = self.conversation.say(text, show_now=show_now, timeout_s=timeout_s)
        titles = item_titles(self.dsn, [i.item_id for i in response.items])
        return ChatTurn(response, titles, self.client.llm_logs(response.request_id))

    def close(self) -> None:
        """Stop the client."""
        self.client.close()
