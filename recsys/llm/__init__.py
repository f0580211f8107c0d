"""The LLM layer: an OpenAI-compatible client, versioned prompts, a circuit breaker, and
our simulated OpenAI-compatible server (tests and the demo). No Kafka here."""

from recsys.llm.client import LlmClient, LlmResult
from recsys.llm.prompts import PromptTemplate, quote_untrusted

__all__ = ["LlmClient", "LlmResult", "PromptTemplate", "quote_untrusted"]
