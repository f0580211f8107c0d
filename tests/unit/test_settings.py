from __future__ import annotations

import pytest
from pydantic import SecretStr

from recsys.exceptions import ConfigurationError
from streams.settings import Settings, load_settings, mask_url


def test_defaults_mean_embedded_stack_and_llm_off() -> None:
    s = Settings()
    assert s.embedded_broker and s.embedded_database
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert not s.llm_enabled
    assert s.trace_exporter == "none"


def test_secrets_are_masked_when_described() -> None:
    s = Settings(
        database_url=SecretStr("postgresql://app:hunter2@db:5432/rec"),
        llm_api_key=SecretStr("sk-very-secret"),
    )
    text = repr(s) + str(s.describe())
    assert "hunter2" not in text
    assert "sk-very-secret" not in text
    assert s.describe()["database_url"] == "postgresql://app:***@db:5432/rec"
    assert s.describe()["llm_api_key"] == "***"


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert (
        mask_url("postgresql://postgres@/streamrec?host=/tmp")
        == "postgresql://postgres@/streamrec?host=/tmp"
    )


def test_unknown_environment_variable_is_refused_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMREC_BROKER_PROT", "1")
    with pytest.raises(
        ConfigurationError, match=r"STREAMREC_BROKER_PROT \(did you mean STREAMREC_BROKER_PORT\?\)"
    ):
        load_settings()


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_LLM_TEMPERATURE", "0.9")
    with pytest.raises(ConfigurationError, match="STREAMREC_LLM_TEMPERATURE"):
        load_settings()


def test_csv_lists_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_WORKERS", "enrich, serve")
    monkeypatch.setenv("STREAMREC_TAG_TAXONOMY", "a,b ,c")
    s = load_settings()
    assert s.workers == ("enrich", "serve")
    assert s.tag_taxonomy == ("a", "b", "c")


def test_unknown_worker_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown worker"):
        load_settings(workers="enrich,bogus")


def test_explicit_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_BROKER_PORT", "9999")
    assert load_settings(broker_port=1234).broker_port == 1234
    assert load_settings(broker_port=None).broker_port == 9999


def test_warmth_thresholds_must_be_ordered() -> None:
    with pytest.raises(ConfigurationError, match="warm_min_interactions"):
        load_settings(cold_max_interactions=10, warm_min_interactions=10)


def test_settings_are_immutable_and_overrides_revalidate() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.broker_port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="less than or equal"):
        s.with_overrides(llm_temperature=0.5)
    assert s.with_overrides(broker_port=1).broker_port == 1


def test_otlp_is_chosen_when_an_endpoint_is_set() -> None:
    assert Settings(otel_endpoint="http://collector:4318").trace_exporter == "otlp"
    assert Settings(otel_exporter="console").trace_exporter == "console"


def test_every_setting_survives_the_trip_to_a_child_process() -> None:
    """Workers get their settings as STREAMREC_* text; every type must parse back."""
    import os

    from stack.supervisor import settings_env

    original = Settings(bootstrap_servers="h:1", database_url="postgresql://u:p@h/db")
    env = settings_env(original)
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        assert Settings() == original
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_als_factor_choices_are_the_indexed_ones() -> None:
    from recsys.cf.als_store import SUPPORTED_FACTORS
    from streams.settings import ALS_FACTOR_CHOICES

    assert ALS_FACTOR_CHOICES == SUPPORTED_FACTORS
    with pytest.raises(ValueError, match="one of 16, 32"):
        Settings(als_factors=48)
