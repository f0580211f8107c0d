"""Which topics each worker consumes, and under which consumer group.

One table for ``doctor``, the dashboard and the archive worker itself, so that lag and
dead-letter counts are always asked about the right topics.
"""

from __future__ import annotations

from streams.settings import Settings
from streams.topics import Topics, TopicSpec

__all__ = ["consumer_group", "worker_inputs"]


def consumer_group(settings: Settings, worker: str) -> str:
    """The consumer group a worker joins by default."""
    return f"{settings.topic_prefix}streamrec-{worker}"


def worker_inputs(settings: Settings, topics: Topics | None = None) -> dict[str, list[TopicSpec]]:
    """Worker name → the topics it consumes."""
    t = topics or Topics(settings)
    archive = [t.rec_responses, t.llm_log, t.feedback_examples]
    if settings.archive_requests:
        archive.append(t.rec_requests)
    if settings.archive_user_events:
        archive.append(t.user_events)
    return {
        "enrich": [t.catalog_changes],
        "users": [t.user_events],
        "serve": [t.rec_requests],
        "feedback": [t.rec_responses, t.user_events],
        "archive": archive,
    }
