"""The counterfactual part of `streamrec replay`: re-run logged requests through a
named policy configuration and store the responses beside the originals — under
``<archive>/counterfactual/<policy>/<rec.responses topic>/`` (same file layout as the
archive; each response carries the partition, offset and timestamp of the request it
answers) and, when asked, on another topic (never the live responses topic)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.progress import Counter
from jobs.ranges import ReplayOptions, ReplaySummary, non_empty, read_range
from recsys.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from streams.replay import ReplayRange
    from streams.settings import Settings
    from streams.topics import Topics, TopicSpec

__all__ = ["run_counterfactual"]


def run_counterfactual(
    settings: Settings,
    topics: Topics,
    spec: TopicSpec,
    rng: ReplayRange,
    root: Path,
    opts: ReplayOptions,
    summary: ReplaySummary,
    progress: Counter,
) -> ReplaySummary:
    """Answer the logged requests of the range with ``opts.policy``; store the answers."""
    from recsys.archive import ArchivedMessage, ArchiveWriter, list_files
    from recsys.counterfactual import build_policy, replay_requests
    from recsys.records import RecRequest, RecResponse, UserEvent
    from streams import admin
    from streams.producer import RecordProducer, registry_from_settings
    from streams.replay import ReplayRange, target_spec
    from streams.serde import AvroSerde

    assert opts.policy is not None
    if spec.name != topics.rec_requests.name:
        raise ConfigurationError(
            f"a counterfactual replay re-runs requests: read {topics.rec_requests.base}, "
            f"not {spec.base}"
        )
    responses_topic = topics.rec_responses
    if opts.out_topic in (responses_topic.name, responses_topic.base):
        raise ConfigurationError(
            "refusing to publish counterfactual responses to the live responses topic; "
            "name another --out-topic"
        )
    if opts.engine == "serving":
        from jobs.serving_engine import register

        register(settings)
    policy = build_policy(opts.policy, opts.engine)
    out_dir = opts.out_dir or root / "counterfactual" / opts.policy
    if list_files(out_dir, responses_topic.name):
        if not opts.overwrite:
            raise ConfigurationError(
                f"{out_dir / responses_topic.name} already holds responses of a replay; "
                "pass --overwrite to replace them"
            )
        shutil.rmtree(out_dir / responses_topic.name)
    logged_requests: dict[str, ArchivedMessage] = {}
    for message in non_empty(
        read_range(settings, spec, rng, opts.source, root, progress), spec.name
    ):
        logged_requests.setdefault(message.value["request_id"], message)
    everything = ReplayRange()
    events: list[UserEvent] = []
    if policy.needs_events:
        if opts.source == "archive" and not list_files(root, topics.user_events.name):
            raise DataNotFound(
                f"policy engine {opts.engine!r} needs the user events before each request, "
                f"and {root} has no {topics.user_events.name}: archive them "
                "(STREAMREC_ARCHIVE_USER_EVENTS=true) or replay with --source kafka"
            )
        events = [
            UserEvent.model_validate(m.value)
            for m in read_range(settings, topics.user_events, everything, opts.source, root, None)
        ]
    logged: dict[str, RecResponse] = {}
    if opts.source == "kafka" or list_files(root, responses_topic.name):
        for m in read_range(settings, responses_topic, everything, opts.source, root, None):
            logged.setdefault(m.value["request_id"], RecResponse.model_validate(m.value))
    requests = [RecRequest.model_validate(m.value) for m in logged_requests.values()]
    serde = AvroSerde(registry_from_settings(settings))
    schema = serde.codec(RecResponse).schema
    schema_id = serde.registry.id_for(responses_topic.subject, schema)
    answered = []
    try:
        pairs = list(replay_requests(policy, requests, events, logged))
    finally:
        close = getattr(policy, "close", None)
        if close is not None:
            close()
    for request, response in pairs:
        origin = logged_requests[request.request_id]
        answered.append(
            ArchivedMessage(
                topic=responses_topic.name,
                partition=origin.partition,
                offset=origin.offset,
                timestamp_ms=origin.timestamp_ms,
                key=response.user_id,
                headers=[
                    ("replay.policy", policy.name.encode()),
                    ("replay.source", origin.source.encode()),
                ],
                schema_id=schema_id,
                value=response.model_dump(mode="python"),
                value_schema=schema,
            )
        )
        summary.llm_used += int(response.llm_used)
        summary.request_ids.append(response.request_id)
    writer = ArchiveWriter(out_dir, roll_bytes=settings.archive_roll_bytes, roll_s=float("inf"))
    writer.register(responses_topic.name, schema)
    for message in sorted(answered, key=lambda m: (m.partition, m.offset)):
        writer.write(message)
    writer.close()
    summary.written = len(answered)
    summary.target = str(out_dir)
    if opts.out_topic:
        with RecordProducer(settings, serde) as producer:
            target = target_spec(opts.out_topic, responses_topic.partitions)
            admin.ensure_topics(settings, [target])
            for message in answered:
                producer.send(target, message.key, RecResponse.model_validate(message.value))
        summary.target += f" and topic {opts.out_topic}"
    summary.topic = spec.name
    return summary
