"""The try-it panel: send one real request through the running serve worker and show
everything that explains its answer — or hold a conversation, one turn per form post.

The request goes to ``rec.requests`` like any client's (:class:`streams.client.RecClient`);
the answer is the ``rec.responses`` record itself (route, warmth bucket, propensity,
each item with its explanation and evidence), joined with the ``rec.llm-log`` records
of the same request (the decision, tokens, cost, validation, and the prompt as sent).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from dashboard.kafka_views import TailIndex
from recsys.records import ConversationTurn, LlmInvolvement, RecRequest, RecResponse, new_id
from recsys.serving.pii import redact
from streams.client import RecClient
from streams.exceptions import RequestTimeout
from streams.settings import Settings

__all__ = ["TryIt", "TryResult", "new_conversation_id"]


def new_conversation_id() -> str:
    """A fresh conversation id for the try-it form."""
    return f"dash-{new_id()[:12]}"


@dataclass(frozen=True)
class TryResult:
    """A request, its response (or why there is none) and its LLM-log records."""

    request: RecRequest
    response: RecResponse | None
    logs: list[LlmInvolvement] = field(default_factory=list)
    error: str | None = None

    def prompts(self) -> list[tuple[LlmInvolvement, str]]:
        """``(record, prompt)`` of records that carry one, PII-redacted again for display."""
        return [(r, redact(r.prompt).text) for r in self.logs if r.prompt]


class TryIt:
    """Sends requests on the dashboard's behalf."""

    def __init__(self, settings: Settings, tail: TailIndex, timeout_s: float = 10.0) -> None:
        self.settings = settings
        self.tail = tail
        self.timeout_s = timeout_s
        self._client: RecClient | None = None
        self._lock = threading.Lock()

    def _rec_client(self) -> RecClient:
        with self._lock:
            if self._client is None:
                self._client = RecClient(self.settings).start()
            return self._client

    def ask(self, user_id: str, query: str | None, k: int = 10) -> TryResult:
        """Ask for ``k`` items for ``user_id`` (optionally for ``query``) and wait."""
        request = RecRequest(
            user_id=user_id,
            query=query or None,
            k=k,
            deadline_ms=5000,
            context={"source": "dashboard"},
        )
        return self._send(request)

    def say(
        self, user_id: str, conversation_id: str, turn: int, text: str, show_now: bool, k: int = 5
    ) -> TryResult:
        """Send one conversation turn for ``user_id`` and wait for the reply."""
        request = RecRequest(
            user_id=user_id,
            k=k,
            deadline_ms=5000,
            context={"source": "dashboard"},
            conversation=ConversationTurn(
                conversation_id=conversation_id, turn=turn, text=text, show_now=show_now
            ),
        )
        return self._send(request)

    def _send(self, request: RecRequest) -> TryResult:
        client = self._rec_client()
        self.tail.follow()  # its log records are read from here on
        try:
            response = client.wait(request, client.submit(request), self.timeout_s)
        except RequestTimeout as exc:
            return TryResult(request, None, self.tail.wait_logs(request.request_id, 0.5), str(exc))
        return TryResult(request, response, self.tail.wait_logs(request.request_id))

    def close(self) -> None:
        """Stop the client."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
