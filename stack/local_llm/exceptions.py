"""Errors of the embedded LLM server; all derive from :class:`recsys.exceptions.StreamrecError`."""

from __future__ import annotations

from recsys.exceptions import StreamrecError
from streams.exceptions import EmbeddedStackError

__all__ = ["InvalidRequest", "LocalLlmError", "ModelNotInstalled"]


class LocalLlmError(EmbeddedStackError):
    """The embedded LLM server could not start, or stopped answering."""


class ModelNotInstalled(LocalLlmError):
    """No model file where the settings (or the install step) say it is."""


class InvalidRequest(StreamrecError):
    """A chat-completions request the server refuses (HTTP 400 in OpenAI's error shape)."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
