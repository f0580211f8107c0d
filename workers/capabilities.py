"""`streamrec doctor`: the effective configuration and, per capability, on or off and why.

The same summary is logged by every worker at start-up, so nothing is ever silently
disabled: an LLM that is off says which setting is missing; a broker that is down says
which address did not answer.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

from recsys.embedding import resolve_model
from recsys.exceptions import StreamrecError
from streams import admin
from streams.lag import group_lag, topic_sizes
from streams.ops_probe import probe_workers
from streams.registry import LocalRegistry
from streams.settings import Settings
from workers.inventory import consumer_group, worker_inputs

__all__ = [
    "Capability",
    "WorkerReport",
    "check_capabilities",
    "log_capabilities",
    "worker_reports",
]

log = logging.getLogger(__name__)

Status = Literal["on", "off", "warn", "error"]


@dataclass(frozen=True)
class Capability:
    """One capability's state, with the reason when it is not on."""

    name: str
    status: Status
    detail: str


def _broker(settings: Settings, timeout_s: float) -> Capability:
    where = "embedded" if settings.embedded_broker else "external"
    try:
        n = admin.probe(settings, timeout_s=timeout_s)
    except StreamrecError as exc:
        hint = " (start it with `streamrec up`)" if settings.embedded_broker else ""
        return Capability("broker", "error", f"{where} {settings.kafka_bootstrap}: {exc}{hint}")
    return Capability(
        "broker", "on", f"{where} Kafka API at {settings.kafka_bootstrap} ({n} broker(s))"
    )


def _dsn(settings: Settings) -> tuple[str | None, str]:
    if settings.database_url is not None:
        return settings.database_url.get_secret_value(), "external"
    return None, "embedded"


def _database(settings: Settings, timeout_s: float) -> tuple[Capability, Capability]:
    import psycopg

    dsn, where = _dsn(settings)
    if dsn is None:
        reason = f"embedded Postgres not running in {settings.pg_data_dir} (start `streamrec up`)"
        return (
            Capability("database", "error", reason),
            Capability("pgvector", "off", "no database to ask"),
        )
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s))) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            installed = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            available = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.Error as exc:
        return (
            Capability("database", "error", f"{where}: cannot connect: {str(exc).strip()}"),
            Capability("pgvector", "off", "no database to ask"),
        )
    db_cap = Capability("database", "on", f"{where} PostgreSQL {version[0] if version else '?'}")
    if installed:
        vec = Capability("pgvector", "on", f"pgvector {installed[0]}")
    elif available:
        vec = Capability(
            "pgvector",
            "off",
            f"pgvector {available[0]} available but not installed: run `streamrec migrate`",
        )
    else:
        vec = Capability(
            "pgvector", "error", "the server has no pgvector extension (install pgvector)"
        )
    return db_cap, vec


def _embedding(settings: Settings) -> Capability:
    try:
        _, description = resolve_model(settings.embedding_model)
    except StreamrecError as exc:
        return Capability("embedding model", "error", str(exc))
    return Capability("embedding model", "on", f"{description} on {settings.embedding_device}")


def _http_status(url: str, headers: dict[str, str], timeout_s: float) -> int:
    """HTTP status of a GET (the standard library: the ``httpx`` package is not a dependency).

    Raises:
        OSError: no answer (refused, unreachable, timed out, bad URL).
    """
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except ValueError as exc:  # malformed URL
        raise OSError(str(exc)) from exc


def _llm(settings: Settings, timeout_s: float) -> Capability:
    if not settings.llm_base_url:
        return Capability(
            "LLM endpoint",
            "off",
            "STREAMREC_LLM_BASE_URL is unset: enrichment uses raw text, serving uses the ranker "
            "order, and every such decision is logged on rec.llm-log as no_endpoint",
        )
    if not settings.llm_model:
        return Capability("LLM endpoint", "off", "STREAMREC_LLM_MODEL is unset")
    url = settings.llm_base_url.rstrip("/") + "/models"
    headers = {}
    if settings.llm_api_key is not None:
        headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
    try:
        status = _http_status(url, headers, timeout_s)
    except OSError as exc:
        return Capability("LLM endpoint", "error", f"{settings.llm_base_url} unreachable: {exc}")
    if status >= 400:
        return Capability("LLM endpoint", "error", f"{url} answered HTTP {status}")
    return Capability(
        "LLM endpoint", "on", f"model {settings.llm_model} at {settings.llm_base_url}"
    )


def _registry(settings: Settings, timeout_s: float) -> Capability:
    if not settings.schema_registry_url:
        n = len(LocalRegistry())
        return Capability(
            "schema registry",
            "on",
            f"local, built from schemas/ ({n} schemas; no STREAMREC_SCHEMA_REGISTRY_URL)",
        )
    try:
        status = _http_status(settings.schema_registry_url.rstrip("/") + "/subjects", {}, timeout_s)
    except OSError as exc:
        return Capability("schema registry", "error", f"{settings.schema_registry_url}: {exc}")
    if status >= 400:
        return Capability(
            "schema registry", "error", f"{settings.schema_registry_url}: HTTP {status}"
        )
    return Capability(
        "schema registry", "on", f"Confluent Schema Registry at {settings.schema_registry_url}"
    )


def _tracing(settings: Settings) -> Capability:
    mode = settings.trace_exporter
    if mode == "none":
        return Capability(
            "tracing",
            "off",
            "no STREAMREC_OTEL_ENDPOINT (set it, or STREAMREC_OTEL_EXPORTER=console)",
        )
    if mode == "console":
        return Capability("tracing", "on", "spans printed to the console")
    return Capability(
        "tracing", "on", f"OTLP/HTTP to {settings.otel_endpoint or 'http://localhost:4318'}"
    )


def check_capabilities(settings: Settings, timeout_s: float = 3.0) -> list[Capability]:
    """Probe every capability (bounded by ``timeout_s`` each)."""
    db_cap, vec_cap = _database(settings, timeout_s)
    return [
        _broker(settings, timeout_s),
        db_cap,
        vec_cap,
        _embedding(settings),
        _llm(settings, timeout_s),
        _registry(settings, timeout_s),
        _tracing(settings),
    ]


def log_capabilities(settings: Settings, worker: str, timeout_s: float = 3.0) -> list[Capability]:
    """Log the capability summary at a worker's start-up (one JSON line each)."""
    caps = check_capabilities(settings, timeout_s)
    for cap in caps:
        level = logging.INFO if cap.status == "on" else logging.WARNING
        log.log(level, "%s capability %s", worker, json.dumps(cap.__dict__))
    return caps


@dataclass(frozen=True)
class WorkerReport:
    """One worker for `doctor`: state, restarts, lag and dead letters."""

    name: str
    state: str
    pid: int | None
    restarts: int | None
    lag: int | None
    dead_letters: int | None
    detail: str

    @property
    def healthy(self) -> bool:
        """Ready and not crash-looping."""
        return self.state == "ready"


def worker_reports(
    settings: Settings, *, kafka: bool = True, timeout_s: float = 1.0
) -> list[WorkerReport]:
    """Each configured worker's health (its endpoint, the supervisor), and — when
    ``kafka`` — its consumer group's lag and its input topics' dead letters."""
    inputs = worker_inputs(settings)
    out = []
    for probe in probe_workers(settings, settings.workers, timeout_s):
        lag = dead = None
        if kafka:
            specs = inputs[probe.name]
            try:
                lags = group_lag(
                    settings, consumer_group(settings, probe.name), [s.name for s in specs]
                )
                lag = sum(g.lag for g in lags)
                dlqs = [s.dlq.name for s in specs if s.dlq is not None]
                dead = sum(topic_sizes(settings, dlqs).values())
            except Exception as exc:  # a broker problem is reported as a capability
                log.debug("lag of %s unavailable: %s", probe.name, exc)
        out.append(
            WorkerReport(
                name=probe.name,
                state=probe.state,
                pid=probe.pid,
                restarts=probe.restarts,
                lag=lag,
                dead_letters=dead,
                detail=probe.detail,
            )
        )
    return out
