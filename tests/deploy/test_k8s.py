"""deploy/k8s: schema-valid (kubernetes-validate for built-in kinds, KEDA's CRD for ScaledObjects), probes,
resources, volumes, autoscaling on the services' real consumer groups, and only real settings in env."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gridhub.kernel.settings import CommonSettings
from schemas.catalogue import TOPICS_TO_CREATE
from tests.deploy.conftest import (
    DATA,
    K8S_DIR,
    SERVICES,
    Manifest,
    Registries,
    all_env_names,
    default_port,
    env_names,
    pod_spec,
    served_service,
    service_env_names,
    workloads,
)

K8S_VERSION = "1.31.0"
GRIDHUB_IMAGE_NAME = "gridhub"
STATEFUL = ("sla", "notifier")  # local state per partition on a volume per replica
# Kinds without a schema in kubernetes-validate: checked against their vendored CRDs (CRD_FILES below).
CRD_KINDS = {"ScaledObject", "Kafka", "KafkaNodePool"}
# The Kafka scaler's trigger metadata (kedacore/keda pkg/scalers/kafka_scaler.go, see data/SOURCES.md);
# "resolvedEnv" ones may also be given as <name>FromEnv.
KEDA_KAFKA_METADATA = {
    "bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions", "fullMetadata", "version", "tls", "unsafeSsl",
    "sasl", "saslTokenProvider", "awsRegion",
}  # fmt: skip
KEDA_FROM_ENV = {"bootstrapServers", "consumerGroup", "topic"}


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m.name: m for m in manifests if m.kind == kind}


def containers(m: Manifest, *, init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_spec(m)
    yield from spec.get("containers", [])
    if init:
        yield from spec.get("initContainers", [])


def is_gridhub(container: dict[str, Any]) -> bool:
    return str(container["image"]).rsplit("/", 1)[-1].split(":")[0] == GRIDHUB_IMAGE_NAME


def service_workloads(manifests: list[Manifest]) -> dict[str, tuple[Manifest, dict[str, Any]]]:
    """GridHub service -> (its workload, its `serve` container)."""
    out = {}
    for m in workloads(manifests):
        for c in containers(m, init=False):
            service = served_service(c)
            if service is not None:
                assert service not in out, f"{service} is deployed twice"
                out[service] = (m, c)
    return out


def config_map(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = by_kind(manifests, "ConfigMap")["gridhub-config"].doc["data"]
    return data


def test_built_in_objects_are_valid_for_kubernetes(manifests: list[Manifest]) -> None:
    errors = []
    kinds = set()
    for m in manifests:
        if m.kind in CRD_KINDS:
            continue
        kinds.add(m.kind)
        try:
            kubernetes_validate.validate(m.doc, K8S_VERSION, strict=True)  # strict: unknown fields are errors
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{m}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{m}: no schema for {exc} (a CRD? add it to CRD_KINDS with its own check)")
    assert not errors, "\n".join(errors)
    assert {"Deployment", "StatefulSet", "Service", "Job", "ConfigMap", "HorizontalPodAutoscaler"} <= kinds


def unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the structural schema does not declare (the API server drops or refuses them): typos."""
    if isinstance(doc, dict) and "properties" in schema:
        for key, value in doc.items():
            if key in schema["properties"]:
                yield from unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif not schema.get("additionalProperties") and not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f"{path}.{key}"
    elif isinstance(doc, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in doc.items():
            yield from unknown_fields(value, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(doc, list) and "items" in schema:
        for i, value in enumerate(doc):
            yield from unknown_fields(value, schema["items"], f"{path}[{i}]")


# Custom resources and the vendored CustomResourceDefinition that describes each (data/SOURCES.md).
CRD_FILES = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "Kafka": "strimzi-040-Crd-kafka.yaml",
    "KafkaNodePool": "strimzi-045-Crd-kafkanodepool.yaml",
}


@pytest.mark.parametrize("kind", sorted(CRD_KINDS))
def test_custom_resources_are_valid_for_their_crd(manifests: list[Manifest], kind: str) -> None:
    (crd,) = [d for d in yaml.safe_load_all((DATA / CRD_FILES[kind]).read_text(encoding="utf-8")) if d]
    assert crd["spec"]["names"]["kind"] == kind
    versions = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"] if v["served"]}
    objects = [m for m in manifests if m.kind == kind]
    assert objects, f"no {kind} in the manifests"
    for m in objects:
        group, version = m.doc["apiVersion"].split("/")
        assert group == crd["spec"]["group"], str(m)
        assert version in versions, f"{m}: {m.doc['apiVersion']} is not served (served: {sorted(versions)})"
        schema = versions[version]
        errors = [f"{e.json_path}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(m.doc)]
        errors += [f"{path}: not in the CRD" for path in unknown_fields(m.doc, schema) if path != ".metadata"]
        assert not errors, f"{m}:\n" + "\n".join(errors)


def test_autoscaling_follows_the_services_consumer_groups(manifests: list[Manifest], registries: Registries) -> None:
    deployed = service_workloads(manifests)
    partitions = {spec.name: spec.partitions for spec in TOPICS_TO_CREATE}
    prefix = config_map(manifests)["GRIDHUB_TOPIC_PREFIX"]
    scaled = {}
    for m in (m for m in manifests if m.kind == "ScaledObject"):
        target = m.doc["spec"]["scaleTargetRef"]
        service = next(s for s, (w, _) in deployed.items() if (w.kind, w.name) == (target["kind"], target["name"]))
        scaled[service] = m
        _, container = deployed[service]
        topics = [t.removeprefix(prefix) for t in registries.topics[service]]
        spec = m.doc["spec"]
        assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], str(m)
        assert spec["maxReplicaCount"] <= min(partitions[t] for t in topics), f"{m}: more replicas than partitions"
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka", str(m)
            meta = trigger["metadata"]
            known = KEDA_KAFKA_METADATA | {f"{k}FromEnv" for k in KEDA_FROM_ENV}
            assert not set(meta) - known, f"{m}: unknown Kafka scaler metadata {set(meta) - known}"
            group = meta.get("consumerGroup")
            assert group == registries.groups[service].replace(CommonSettings().topic_prefix, prefix, 1), str(m)
            assert int(meta["lagThreshold"]) > 0
            if "topic" in meta:
                assert meta["topic"].removeprefix(prefix) in topics, f"{m}: {service} does not consume {meta['topic']}"
            if "bootstrapServersFromEnv" in meta:
                env = {e["name"] for e in container.get("env", [])}
                if any(ref.get("configMapRef", {}).get("name") == "gridhub-config" for ref in container["envFrom"]):
                    env |= set(config_map(manifests))
                assert meta["bootstrapServersFromEnv"] in env, str(m)
            else:
                assert meta["bootstrapServers"] == config_map(manifests)["KAFKA_BOOTSTRAP"], str(m)
    assert sorted(scaled) == ["intake", "notifier", "router"], "batch workers scale on lag (the SLA stays at one)"
    assert "sla" not in scaled and deployed["sla"][0].doc["spec"]["replicas"] == 1
    hpas = by_kind(manifests, "HorizontalPodAutoscaler")
    assert hpas["adapters"].doc["spec"]["scaleTargetRef"]["name"] == deployed["adapters"][0].name


def test_every_service_is_deployed_with_probes_ports_and_a_service(manifests: list[Manifest]) -> None:
    deployed = service_workloads(manifests)
    assert sorted(deployed) == sorted(SERVICES), "the manifests run exactly the services of `gridhub serve`"
    services = by_kind(manifests, "Service")
    for service, (workload, c) in deployed.items():
        port = default_port(service)
        assert c["ports"] == [{"name": "http", "containerPort": port}], f"{service}: port {port} (its Settings)"
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, service
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, service
        assert c["startupProbe"]["httpGet"]["path"] == "/healthz", service
        annotations = workload.doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"
        labels = workload.doc["spec"]["template"]["metadata"]["labels"]
        assert workload.doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
        matching = [s for s in services.values() if s.doc["spec"]["selector"].items() <= labels.items()]
        assert any(p["port"] == port for s in matching for p in s.doc["spec"]["ports"]), f"{service}: no Service"


def test_every_container_has_resource_requests_and_limits(manifests: list[Manifest]) -> None:
    missing = []
    for m in workloads(manifests):
        for c in containers(m):
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(part, {})):
                    missing.append(f"{m} container {c['name']}: {part}")
    assert not missing, "\n".join(missing)


def test_notifier_and_sla_are_statefulsets_with_a_volume_per_replica(manifests: list[Manifest]) -> None:
    deployed = service_workloads(manifests)
    data_dir = config_map(manifests)["GRIDHUB_DATA_DIR"]
    services = by_kind(manifests, "Service")
    for service in STATEFUL:
        workload, c = deployed[service]
        assert workload.kind == "StatefulSet", f"{service} keeps local state: a StatefulSet"
        claims = {t["metadata"]["name"] for t in workload.doc["spec"]["volumeClaimTemplates"]}
        mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
        assert mounts.get(data_dir) in claims, f"{service}: GRIDHUB_DATA_DIR on its own claim"
        governing = services[workload.doc["spec"]["serviceName"]]
        assert governing.doc["spec"].get("clusterIP") == "None", f"{service}: the governing Service is headless"
    for service in set(SERVICES) - set(STATEFUL):
        assert deployed[service][0].kind == "Deployment", service


def test_prod_settings_in_the_config_map(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> None:
    data = config_map(manifests)
    unknown = set(data) - all_env_names()
    assert not unknown, f"ConfigMap keys that are no setting (typo?): {sorted(unknown)}"
    for name in data:
        monkeypatch.setenv(name, data[name])
    common = CommonSettings()
    assert common.mode == "prod" and common.kafka_replication_factor == 3 and common.kafka_idempotence is True
    for service in SERVICES:
        assert data.get(f"GRIDHUB_{service.upper()}_HOST") == "0.0.0.0", service


def test_container_env_and_secrets_are_real_settings(manifests: list[Manifest]) -> None:
    secret = by_kind(manifests, "Secret")["gridhub-secrets"]
    template_keys = set(secret.doc["stringData"])
    assert not template_keys - all_env_names(), f"Secret keys that are no setting: {template_keys - all_env_names()}"
    config_maps = set(by_kind(manifests, "ConfigMap"))
    problems = []
    for m in workloads(manifests):
        for c in containers(m):
            if not is_gridhub(c):
                continue
            service = served_service(c)
            known = service_env_names(service) if service else env_names(CommonSettings)
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in config_maps:
                    problems.append(f"{m} {c['name']}: no ConfigMap {ref['configMapRef']['name']}")
            for env in c.get("env", []):
                if env["name"] not in known:
                    problems.append(f"{m} {c['name']}: {env['name']} is no setting of {service or 'the CLI'}")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    if ref["name"] != secret.name or ref["key"] != env["name"]:
                        problems.append(f"{m} {c['name']}: {env['name']} from {ref['name']}/{ref['key']}")
                    if not ref.get("optional") and ref["key"] not in template_keys:
                        problems.append(f"{m} {c['name']}: {ref['key']} required but not in the Secret template")
    assert not problems, "\n".join(problems)


def test_one_gridhub_image_everywhere(manifests: list[Manifest]) -> None:
    images = {c["image"] for m in workloads(manifests) for c in containers(m) if is_gridhub(c)}
    assert len(images) == 1, f"one image, the service chosen by command: {images}"


def test_strimzi_cluster_has_three_kraft_nodes_with_min_isr_2(manifests: list[Manifest]) -> None:
    kafka = by_kind(manifests, "Kafka")["gridhub"]
    pools = [m for m in manifests if m.kind == "KafkaNodePool"]
    assert sum(p.doc["spec"]["replicas"] for p in pools) == 3
    for pool in pools:
        assert pool.doc["metadata"]["labels"]["strimzi.io/cluster"] == kafka.name
        assert set(pool.doc["spec"]["roles"]) == {"controller", "broker"}
    config = kafka.doc["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == 3 and config["min.insync.replicas"] == 2
    assert config["offsets.topic.replication.factor"] == 3 and config["auto.create.topics.enable"] is False
    plain = next(x for x in kafka.doc["spec"]["kafka"]["listeners"] if not x["tls"])
    assert config_map(manifests)["KAFKA_BOOTSTRAP"] == f"{kafka.name}-kafka-bootstrap:{plain['port']}"


def test_manifest_files_are_applied_in_order() -> None:
    names = sorted(p.name for p in K8S_DIR.glob("*.yaml"))
    assert names[0] == "00-namespace.yaml" and names[1] == "01-configmap.yaml", names
