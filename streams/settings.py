"""The one settings object of a streamrec process.

Every knob is a field, read from ``STREAMREC_*`` environment variables (or passed
explicitly, which wins). The fields are declared in sections
(:mod:`streams.settings_sections`: kafka, postgres, llm, users, serving, …); the
object inherits them all, so variable names stay flat, and hands each section out
as a typed view (``settings.users``). The object is immutable, rejects unknown
``STREAMREC_`` variables with a message naming them, and prints with secrets masked.
The docs' settings table is generated from it and a test keeps the two in sync.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.exceptions import ConfigurationError
from streams.settings_sections import (
    ALS_FACTOR_CHOICES,
    WORKER_NAMES,
    CfSettings,
    DataSettings,
    DialogueSettings,
    EmbeddingSettings,
    FeedbackSettings,
    GeneralSettings,
    KafkaSettings,
    LlmSettings,
    OpsSettings,
    PostgresSettings,
    ServingSettings,
    TracingSettings,
    UsersSettings,
)

__all__ = [
    "ALS_FACTOR_CHOICES",
    "ENV_PREFIX",
    "RETIRED",
    "WORKER_NAMES",
    "Settings",
    "load_settings",
    "mask_url",
]

log = logging.getLogger(__name__)

ENV_PREFIX = "STREAMREC_"

#: Settings that are no longer read: accepted in the environment with a warning (so an
#: upgrade never fails on them), rejected as explicit arguments.
RETIRED: dict[str, str] = {
    "users_batch_wait_ms": "the users worker fills batches from its fetches "
    "(STREAMREC_USERS_BATCH_SIZE, STREAMREC_USERS_FETCH_WAIT_MS)",
}

_S = TypeVar("_S", bound=BaseModel)


def mask_url(url: str) -> str:
    """Hide the password of a URL/DSN (``postgresql://u:secret@h/db`` → ``u:***``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(
    BaseSettings,
    DataSettings,
    OpsSettings,
    TracingSettings,
    FeedbackSettings,
    DialogueSettings,
    ServingSettings,
    CfSettings,
    UsersSettings,
    LlmSettings,
    EmbeddingSettings,
    PostgresSettings,
    KafkaSettings,
    GeneralSettings,
):
    """All configuration of streamrec. Unset broker/database means the embedded stack."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
        case_sensitive=False,
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.warm_min_interactions <= self.cold_max_interactions:
            raise ValueError(
                "warm_min_interactions must be above cold_max_interactions "
                f"({self.warm_min_interactions} <= {self.cold_max_interactions})"
            )
        if self.db_pool_max < self.db_pool_min:
            raise ValueError("db_pool_max must be at least db_pool_min")
        return self

    # ---- sections -----------------------------------------------------------------------
    def _section(self, kind: type[_S]) -> _S:
        return kind.model_construct(**{name: getattr(self, name) for name in kind.model_fields})

    @cached_property
    def general(self) -> GeneralSettings:
        """Home, logging, workers."""
        return self._section(GeneralSettings)

    @cached_property
    def kafka(self) -> KafkaSettings:
        """Broker, topics and clients."""
        return self._section(KafkaSettings)

    @cached_property
    def postgres(self) -> PostgresSettings:
        """Database and pools."""
        return self._section(PostgresSettings)

    @cached_property
    def embedding(self) -> EmbeddingSettings:
        """The embedder."""
        return self._section(EmbeddingSettings)

    @cached_property
    def llm(self) -> LlmSettings:
        """The LLM endpoint and its uses."""
        return self._section(LlmSettings)

    @cached_property
    def users(self) -> UsersSettings:
        """User state and the users worker."""
        return self._section(UsersSettings)

    @cached_property
    def cf(self) -> CfSettings:
        """ALS and popularity."""
        return self._section(CfSettings)

    @cached_property
    def serving(self) -> ServingSettings:
        """The serving policy and limits."""
        return self._section(ServingSettings)

    @cached_property
    def dialogue(self) -> DialogueSettings:
        """Conversations."""
        return self._section(DialogueSettings)

    @cached_property
    def feedback(self) -> FeedbackSettings:
        """Attribution and the archive."""
        return self._section(FeedbackSettings)

    @cached_property
    def tracing(self) -> TracingSettings:
        """OpenTelemetry."""
        return self._section(TracingSettings)

    @cached_property
    def ops(self) -> OpsSettings:
        """Logs, metrics, health, the dashboard."""
        return self._section(OpsSettings)

    @cached_property
    def data(self) -> DataSettings:
        """Data sets."""
        return self._section(DataSettings)

    # ---- derived -----------------------------------------------------------------------
    @property
    def embedded_broker(self) -> bool:
        """True when no external Kafka is configured."""
        return self.bootstrap_servers is None

    @property
    def embedded_database(self) -> bool:
        """True when no external Postgres is configured."""
        return self.database_url is None

    @property
    def kafka_bootstrap(self) -> str:
        """The bootstrap address clients use (embedded or external)."""
        return self.bootstrap_servers or f"{self.broker_host}:{self.broker_port}"

    @property
    def pg_data_dir(self) -> Path:
        """Data directory of the embedded Postgres."""
        return self.home / "pgdata"

    @property
    def archive_root(self) -> Path:
        """Root folder of the Avro archive."""
        return self.archive_dir or self.home / "archive"

    @property
    def llm_enabled(self) -> bool:
        """True when an LLM endpoint and model are configured."""
        return bool(self.llm_base_url and self.llm_model)

    @property
    def trace_exporter(self) -> str:
        """The effective exporter: explicit choice, else otlp iff an endpoint is set."""
        if self.otel_exporter is not None:
            return self.otel_exporter
        return "otlp" if self.otel_endpoint else "none"

    def ops_port(self, component: str) -> int | None:
        """Port of a worker's (or the supervisor's) metrics/health endpoint; None when off."""
        if self.metrics_port == 0:
            return None
        names = (*WORKER_NAMES, "supervisor")
        if component not in names:
            raise ConfigurationError(f"no endpoint for {component!r}; known: {', '.join(names)}")
        return self.metrics_port + names.index(component)

    def with_overrides(self, **changes: Any) -> Settings:
        """A validated copy with some fields changed (settings are immutable)."""
        data = self.model_dump()
        data.update(changes)
        return type(self).model_validate(data)

    def describe(self) -> dict[str, str]:
        """Every effective setting as text, secrets masked: what `doctor` prints."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                text = mask_url(secret) if "://" in secret else "***"
            elif value is None:
                text = "(unset)"
            elif isinstance(value, tuple):
                text = ",".join(map(str, value))
            else:
                text = str(value)
            out[name] = text
        return out


def _unknown_env_keys(environ: Mapping[str, str]) -> list[str]:
    known = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    retired = {f"{ENV_PREFIX}{name}".upper(): why for name, why in RETIRED.items()}
    unknown = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        if upper in retired:
            log.warning("%s is no longer read (%s); remove it", upper, retired[upper])
            continue
        unknown.append(key)
    return unknown


def load_settings(**overrides: Any) -> Settings:
    """Build settings from ``STREAMREC_*`` variables plus explicit overrides (which win).

    Overrides that are ``None`` are ignored, so CLI options can be passed straight through.

    Raises:
        ConfigurationError: an unknown ``STREAMREC_`` variable, or a value that does not
            validate; the message names the variable and, for typos, the closest match.
    """
    unknown = _unknown_env_keys(os.environ)
    if unknown:
        choices = [f"{ENV_PREFIX}{n}".upper() for n in Settings.model_fields]
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key.upper(), choices, n=1)
            hints.append(key + (f" (did you mean {close[0]}?)" if close else ""))
        raise ConfigurationError("unknown setting(s) in the environment: " + "; ".join(hints))
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            source = f"{ENV_PREFIX}{field}".upper() if field in Settings.model_fields else field
            problems.append(f"{source}: {err['msg']}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from exc
