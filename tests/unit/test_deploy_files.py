"""docker-compose.yml and the Dockerfile, validated statically (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from stack.supervisor import settings_env
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_names_the_services() -> None:
    services = _compose()["services"]
    for name in (
        "kafka",
        "postgres",
        "otel-collector",
        "jaeger",
        "enrich",
        "users",
        "serve",
        "feedback",
        "archive",
        "migrate",
        "topics",
    ):
        assert name in services, name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["postgres"]["image"].startswith("pgvector/pgvector")


def test_workers_point_at_the_right_hosts_with_valid_settings() -> None:
    services = _compose()["services"]
    for name in ("enrich", "users", "serve", "feedback", "archive"):
        svc = services[name]
        env = svc["environment"]
        assert env["STREAMREC_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert "@postgres:5432/" in env["STREAMREC_DATABASE_URL"]
        assert env["STREAMREC_OTEL_ENDPOINT"] == "http://otel-collector:4318"
        assert svc["command"] == ["worker", name]
        assert svc["build"] == "."
        assert {"kafka", "postgres"} <= set(svc["depends_on"])
        # every STREAMREC_ variable must be a real setting
        known = {f"STREAMREC_{f.upper()}" for f in Settings.model_fields}
        assert set(env) <= known, set(env) - known


def test_collector_forwards_to_jaeger() -> None:
    conf = yaml.safe_load((REPO / "deploy" / "otel-collector.yaml").read_text())
    assert conf["exporters"]["otlp/jaeger"]["endpoint"].startswith("jaeger:")
    assert _compose()["services"]["otel-collector"]["volumes"][0].startswith(
        "./deploy/otel-collector.yaml"
    )


def test_prometheus_scrapes_every_worker_on_its_port() -> None:
    services = _compose()["services"]
    assert services["prometheus"]["volumes"][0].startswith("./deploy/prometheus.yml:")
    conf = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    targets = {
        t for job in conf["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    for name in ("enrich", "users", "serve", "feedback", "archive"):
        env = services[name]["environment"]
        s = Settings(
            metrics_host=env["STREAMREC_METRICS_HOST"],
            metrics_port=int(env["STREAMREC_METRICS_PORT"]),
        )
        assert s.metrics_host == "0.0.0.0"  # reachable from the prometheus container
        assert f"{name}:{s.ops_port(name)}" in targets, name
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f":{s.ops_port(name)}/health/live" in probe


def test_dockerfile_installs_cpu_torch_first_and_runs_the_cli() -> None:
    text = (REPO / "Dockerfile").read_text()
    torch_at = text.index("download.pytorch.org/whl/cpu")
    assert torch_at < text.index("pip install -c")
    assert 'ENTRYPOINT ["streamrec"]' in text
    for folder in ("schemas", "migrations", "streams", "recsys", "workers"):
        assert f"COPY {folder} " in text


def test_child_environment_round_trips_settings() -> None:
    s = Settings(broker_port=1234, workers=("enrich", "serve"), llm_rerank=False)
    env = settings_env(s)
    assert env["STREAMREC_BROKER_PORT"] == "1234"
    assert env["STREAMREC_WORKERS"] == "enrich,serve"
    assert env["STREAMREC_LLM_RERANK"] == "false"
