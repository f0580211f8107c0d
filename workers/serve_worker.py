"""Worker `serve`: rec.requests → rec.responses + rec.llm-log.

Thin: decode (the loop dead-letters bad requests) → :class:`Recommender` → emit the
response and one LLM-involvement record per LLM decision. The
:class:`~streams.pipelined_loop.PipelinedLoop` serves each request as it arrives (at most
``serve_concurrency`` in flight) and commits, in order, the offsets of requests whose
outputs the broker acknowledged; each request continues its trace and fails alone: a
request whose values Postgres refuses is dead-lettered (``store_rejected``) while the
others are answered. Postgres away is :class:`Retryable` (that request is served again;
a crash before the commit answers it again: responses are keyed by ``request_id``, so a
repeat is recognisable). A request already past its deadline when serving would begin is
answered ``EXPIRED`` without computing anything (:mod:`recsys.serving.shedding`,
``serve_shed_expired``); its offset commits like any answered one. Item details and
vectors are cached per process (:mod:`recsys.serving.item_cache`), invalidated from
``catalog.enriched`` (:class:`~streams.follow.KeyFollower`); ``serve_replicas``
processes share the requests through the consumer group. Design and figures: docs/workers/serve.md.

The routing policy is the active version in Postgres (checked every ``policy_refresh_s``
seconds, switched without a restart), or the settings' policy while none is active.

User state comes from the users worker's Postgres read model, measured at a few ms per
read: a co-partitioned local table would need the serving process to consume the
users' changelog too, and a consumer's fetch wait on the embedded broker costs more than
one indexed read.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from typing import Any

from recsys.dialogue.engine import Dialogue
from recsys.embedding import Embedder
from recsys.exceptions import DatabaseUnavailable, DataRejected
from recsys.policy.store import PgPolicies, PolicyFollower
from recsys.records import RecRequest
from recsys.serving.item_cache import ItemCache
from recsys.serving.query_embedding import QueryEncoder
from recsys.serving.recommender import Recommender
from recsys.serving.shedding import Shedder, expired_response
from recsys.users.state import Position
from streams.consumer_loop import STORE_REJECTED, ConsumerLoop, Inbound, Retryable
from streams.follow import KeyFollower
from streams.pipelined_loop import PipelinedLoop
from streams.tracing import consume_span
from workers.bootstrap import Context
from workers.metrics import observe_expired, observe_served
from workers.model_load import load_model
from workers.query_embedder import load_query_embedder
from workers.serve_wiring import build_dialogue, build_recommender, llm_client

__all__ = ["ServeWorker", "run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeWorker:
    """What a running serve worker exposes (tests, benchmarks)."""

    recommender: Recommender
    loop: ConsumerLoop
    item_cache: ItemCache
    invalidations: KeyFollower
    policies: PolicyFollower
    dialogue: Dialogue | None = None
    shedder: Shedder | None = None


async def run(ctx: Context, stop: asyncio.Event) -> None:
    """Serve requests until ``stop`` is set."""
    s, topics, producer = ctx.settings, ctx.topics, ctx.producer
    apool = await ctx.async_pool("serve", autocommit=True, full=True)
    embedder: Embedder | None = ctx.overrides.embedder
    if embedder is not None:
        loaded = await load_model(embedder, stop, worker="serve")
    else:
        embedder = await load_query_embedder(s, stop)
        loaded = embedder is not None
    if not loaded or embedder is None:
        log.info("serve: stopped while the embedding model was loading")
        return
    aloop = asyncio.get_running_loop()
    encoder = QueryEncoder(embedder)
    await encoder.embed("warm up the query path")
    client, off_reason = llm_client(ctx)
    if client is not None:  # import the SDK now, not inside the first request's deadline
        await aloop.run_in_executor(None, lambda: client.sdk)
    cache = ItemCache(s.serve_item_cache_size)
    # follow catalog.enriched from its end before anything is cached (streams/follow.py)
    follower = await aloop.run_in_executor(
        None,
        KeyFollower(
            s,
            topics.catalog_enriched,
            on_keys=lambda keys: aloop.call_soon_threadsafe(cache.invalidate, keys),
            on_gap=lambda: aloop.call_soon_threadsafe(cache.clear),
            # nobody waits on an invalidation: a long fetch wait keeps this follower of
            # every serve process almost free for the broker (stale for ≤ 1 s more)
            fetch_wait_ms=s.background_fetch_wait_ms,
        ).start,
    )
    recommender = build_recommender(s, apool, encoder, client, item_cache=cache)
    await recommender.warm()
    dialogue = build_dialogue(s, apool, recommender, client)
    policies = PolicyFollower(
        PgPolicies(apool),
        recommender.policy,
        lambda policy: setattr(recommender, "policy", policy),
        s.policy_refresh_s,
    )
    await policies.refresh()  # start on the active version, if there is one
    follow = asyncio.create_task(policies.run(stop), name="serve-policy-follower")
    log.info(
        "serve: model %s, LLM %s, policy %s, config %s",
        embedder.name,
        recommender.llm.model or f"off ({off_reason})",
        recommender.policy.version,
        recommender.config,
    )
    shedder = Shedder(s.serve_shed_expired, s.serve_deadline_grace_ms / 1000.0)
    limit = asyncio.Semaphore(s.serve_concurrency)
    #: Positions of the current batch already answered or rejected (a retried batch
    #: skips them).
    done: set[tuple[str, int, int]] = set()

    def shed(msg: Inbound[RecRequest], received: float) -> bool:
        """Answer ``EXPIRED`` if the request is already too late (no LLM, no log records)."""
        late_s = shedder.lateness_s(msg.value)
        if late_s is None:
            return False
        request = msg.value
        attributes = {
            "streamrec.request_id": request.request_id,
            "streamrec.user_id": request.user_id,
            "streamrec.status": "EXPIRED",
        }
        with consume_span("rec.requests serve", msg.headers, attributes):
            response = expired_response(
                request, late_s=late_s, latency_ms=(time.monotonic() - received) * 1000
            )
            producer.send(topics.rec_responses, request.user_id, response)
        shedder.shed(late_s)
        observe_expired(late_s)
        done.add((msg.topic, msg.partition, msg.offset))
        return True

    async def one(msg: Inbound[RecRequest]) -> None:
        if shed(msg, time.monotonic()):  # too late already: no slot, no work
            return
        async with limit:
            received = time.monotonic()
            if shed(msg, received):  # expired while waiting for a slot
                return
            request = msg.value
            with consume_span(
                "rec.requests serve",
                msg.headers,
                {"streamrec.request_id": request.request_id, "streamrec.user_id": request.user_id},
            ) as span:
                try:
                    if request.conversation is not None:
                        position = Position(msg.topic_id or "", msg.partition, msg.offset)
                        served = await dialogue.serve(request, received=received, position=position)
                    else:
                        served = await recommender.recommend(request, received=received)
                except DataRejected as exc:
                    loop.reject(msg, STORE_REJECTED, str(exc))
                    done.add((msg.topic, msg.partition, msg.offset))
                    return
                span.set_attribute("streamrec.route", served.response.route.value)
                span.set_attribute("streamrec.llm_used", served.response.llm_used)
                producer.send(topics.rec_responses, request.user_id, served.response)
                for record in served.logs:
                    producer.send(topics.llm_log, record.request_id, record)
                observe_served(served.response, served.logs, served.timings)
                done.add((msg.topic, msg.partition, msg.offset))

    async def handle(batch: list[Inbound[Any]]) -> None:
        todo = [m for m in batch if (m.topic, m.partition, m.offset) not in done]
        results = await asyncio.gather(*(one(m) for m in todo), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        unavailable = [f for f in failures if isinstance(f, DatabaseUnavailable)]
        if len(unavailable) < len(failures):  # a bug: the first one stops the worker
            raise next(f for f in failures if not isinstance(f, DatabaseUnavailable))
        if unavailable:
            raise Retryable(str(unavailable[0])) from unavailable[0]
        done.clear()

    loop = PipelinedLoop(
        s,
        worker="serve",
        inputs=[topics.rec_requests],
        handler=handle,
        producer=producer,
        max_in_flight=s.serve_concurrency,
        commit_interval_s=s.serve_commit_interval_ms / 1000.0,
    )
    # Everything loaded so far (torch, transformers, the model: ≈ 435k objects) lives as
    # long as the process; a full collection walking it took 1.2-1.4 s here, a pause that
    # lands on whichever requests are in flight. Frozen, collections see only new objects.
    gc.collect()
    gc.freeze()
    ctx.handles.put(ServeWorker(recommender, loop, cache, follower, policies, dialogue, shedder))
    try:
        await loop.run(stop)
    finally:
        follower.stop()
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
        await recommender.aclose()
        encoder.close()
        if client is not None:
            await client.aclose()
