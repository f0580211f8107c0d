"""Errors of the LLM layer; all derive from :class:`recsys.exceptions.StreamrecError`."""

from __future__ import annotations

from recsys.exceptions import StreamrecError

__all__ = ["LlmCallError"]


class LlmCallError(StreamrecError):
    """A structured LLM call did not produce a valid answer.

    ``reason`` is the short machine-readable cause (``timeout``, ``http_429``,
    ``invalid_json``, …) that also goes into ``rec.llm-log``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
