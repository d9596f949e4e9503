"""deploy/compose.yaml: valid against the Compose Specification's schema, and what GridHub needs of it."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import jsonschema
import pytest
import yaml

from gridhub.kernel.settings import CommonSettings
from tests.deploy.conftest import (
    DATA,
    DEPLOY,
    SERVICES,
    default_port,
    interpolate,
    service_env_names,
)

KAFKA_BROKERS = ("kafka-1", "kafka-2", "kafka-3")


def gridhub_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services running `gridhub serve <service>`, by the GridHub service they run."""
    out = {}
    for name, svc in compose["services"].items():
        command = svc.get("command") or []
        if len(command) >= 2 and command[0] == "serve":
            out[command[1]] = svc | {"_name": name}
    return out


def test_compose_file_is_valid_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, svc in compose["services"].items()
        if svc.get("restart") != "no" and (not svc.get("healthcheck") or svc["healthcheck"].get("disable"))
    ]
    assert not missing, f"services without a healthcheck: {missing}"


def test_every_gridhub_service_is_deployed_and_checks_readyz_on_its_port(compose: dict[str, Any]) -> None:
    served = gridhub_services(compose)
    assert sorted(served) == sorted(SERVICES), "compose runs exactly the five services of `gridhub serve`"
    for service, svc in served.items():
        assert svc["_name"] == service
        test = " ".join(svc["healthcheck"]["test"])
        urls = re.findall(r"http://[^'\" ]+", test)
        assert urls == [f"http://127.0.0.1:{default_port(service)}/readyz"], f"{service} healthcheck: {test}"
        host_var = f"GRIDHUB_{service.upper()}_HOST"
        assert svc["environment"].get(host_var) == "0.0.0.0", f"{service} must listen beyond loopback"


def test_services_have_replicas_and_stateful_ones_volumes(compose: dict[str, Any]) -> None:
    served = gridhub_services(compose)
    for service, svc in served.items():
        replicas = svc.get("deploy", {}).get("replicas")
        assert isinstance(replicas, int) and replicas >= 1, f"{service}: deploy.replicas"
    for service in ("adapters", "intake", "router", "notifier"):
        assert served[service]["deploy"]["replicas"] >= 2, f"{service} is stateless or per-partition: 2 or more"
    # The SLA owns every partition in one replica (GET /tasks/{id} on its published port) and keeps its files.
    assert served["sla"]["deploy"]["replicas"] == 1
    assert any(v.endswith(":/var/lib/gridhub") for v in served["sla"]["volumes"])


def test_three_kraft_kafka_nodes_with_replication_3_and_min_isr_2(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = {name: svc for name, svc in services.items() if str(svc.get("image", "")).startswith("apache/kafka")}
    brokers = {name: svc for name, svc in kafka.items() if "KAFKA_NODE_ID" in svc.get("environment", {})}
    assert sorted(brokers) == list(KAFKA_BROKERS)
    voters = {f"{n + 1}@{name}:9093" for n, name in enumerate(KAFKA_BROKERS)}
    node_ids = set()
    for name, svc in brokers.items():
        env = svc["environment"]
        node_ids.add(int(env["KAFKA_NODE_ID"]))
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        assert "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert interpolate(env["CLUSTER_ID"]), "KRaft needs a cluster id"
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 3
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
        assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
        assert svc.get("healthcheck"), name
        assert any(v.endswith(":/var/lib/kafka/data") for v in svc["volumes"]), f"{name} keeps its log on a volume"
    assert node_ids == {1, 2, 3}


def test_gridhub_services_start_after_the_topics_job_in_prod_mode(compose: dict[str, Any]) -> None:
    for service, svc in gridhub_services(compose).items():
        env = svc["environment"]
        assert env["GRIDHUB_MODE"] == "prod", service
        assert int(env["GRIDHUB_KAFKA_REPLICATION_FACTOR"]) == 3, service
        assert str(env["GRIDHUB_KAFKA_IDEMPOTENCE"]).lower() == "true", service
        assert set(interpolate(env["KAFKA_BOOTSTRAP"]).split(",")) == {f"{b}:9092" for b in KAFKA_BROKERS}
        assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully", service


def test_common_environment_is_accepted_by_the_settings_in_prod(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = gridhub_services(compose)["router"]["environment"]
    for name in [n for n in os.environ if n.startswith("GRIDHUB_") or n == "KAFKA_BOOTSTRAP"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, interpolate(value))
    common = CommonSettings()
    assert common.mode == "prod"
    assert common.kafka_replication_factor == 3
    assert common.kafka_idempotence is True  # acks=all with idempotence on real Kafka


def test_every_environment_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    unknown = []
    for service, svc in gridhub_services(compose).items():
        known = service_env_names(service)
        unknown += [f"{service}: {name}" for name in svc["environment"] if name not in known]
    assert not unknown, f"not a field of the service's Settings (typo?): {unknown}"


def test_prometheus_mounts_its_config_and_rules_and_grafana_its_provisioning(compose: dict[str, Any]) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./prometheus/rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]

    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    dashboards_at = next(target for target, source in mounts.items() if source == "./grafana/dashboards")
    for source in [s for s in mounts.values() if s.startswith("./")]:
        assert (DEPLOY / source).exists(), f"compose mounts {source}, which is not in deploy/"
    provider = (DEPLOY / "grafana/provisioning/dashboards/gridhub.yaml").read_text(encoding="utf-8")
    assert f"path: {dashboards_at}\n" in provider, "the dashboard provider reads where compose mounts the dashboards"
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home.startswith(dashboards_at + "/"), home
        assert (DEPLOY / "grafana/dashboards" / home.rsplit("/", 1)[1]).exists(), f"no dashboard {home}"


def test_published_ports_match_the_settings(compose: dict[str, Any]) -> None:
    for service, svc in gridhub_services(compose).items():
        for port in svc.get("ports", []):
            assert port.endswith(f":{default_port(service)}"), f"{service} publishes {port}"


def test_prometheus_scrapes_each_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text(encoding="utf-8"))
    ports = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                ports[name] = sd["port"]
    for service in SERVICES:
        assert ports.get(service) == default_port(service), f"prometheus.yml scrapes {service} on {ports.get(service)}"


def test_one_image_for_every_service(compose: dict[str, Any]) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'^ENTRYPOINT \["gridhub"\]$', dockerfile, re.M), "the command picks the service"
    exposed = {int(p) for line in re.findall(r"^EXPOSE (.+)$", dockerfile, re.M) for p in line.split()}
    assert exposed == {default_port(s) for s in SERVICES}
    builds = {json.dumps(svc.get("build"), sort_keys=True) for svc in gridhub_services(compose).values()}
    images = {svc.get("image") for svc in gridhub_services(compose).values()}
    assert len(builds) == 1 and len(images) == 1, "every service runs the one image"
    build = compose["services"]["router"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
