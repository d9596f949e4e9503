"""The topic catalogue and the manifests agree: the topics jobs create every catalogue topic (and nothing else) with
its partitions, cleanup and retention, replication factor 3 and min.insync.replicas 2.

The script is run for real with a stand-in kafka-topics.sh that records its arguments, so what is checked is what
the job would ask the brokers for."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas.catalogue import TOPICS_TO_CREATE
from tests.deploy.conftest import TOPICS_SCRIPT, Manifest, pod_spec

STAND_IN = """#!/bin/sh
printf '%s\\n' "$*" >> "$RECORD"
"""


def run_script(tmp_path: Path, script: Path, prefix: str) -> list[list[str]]:
    """Run the topics script against a stand-in kafka-topics.sh; the argument lists of each --create call."""
    sh = shutil.which("sh")
    if sh is None:
        pytest.fail("no /bin/sh to run deploy/kafka/create-topics.sh")
    kafka_home = tmp_path / "kafka"
    (kafka_home / "bin").mkdir(parents=True)
    tool = kafka_home / "bin" / "kafka-topics.sh"
    tool.write_text(STAND_IN, encoding="utf-8")
    tool.chmod(0o755)
    record = tmp_path / "calls.txt"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KAFKA_HOME": str(kafka_home),
        "KAFKA_BOOTSTRAP": "kafka-1:9092",
        "GRIDHUB_TOPIC_PREFIX": prefix,
        "RECORD": str(record),
    }
    subprocess.run([sh, str(script)], env=env, check=True, capture_output=True, timeout=30)
    calls = [shlex.split(line) for line in record.read_text(encoding="utf-8").splitlines()]
    return [call for call in calls if "--create" in call]


def parse_create(call: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"config": {}}
    it = iter(call)
    for arg in it:
        if arg == "--config":
            key, _, value = next(it).partition("=")
            opts["config"][key] = value
        elif arg in ("--topic", "--partitions", "--replication-factor", "--bootstrap-server"):
            opts[arg[2:]] = next(it)
        else:
            opts.setdefault("flags", set()).add(arg)
    return opts


@pytest.mark.parametrize("prefix", ["gridhub.", "county-a."])
def test_topics_script_creates_exactly_the_catalogue(tmp_path: Path, prefix: str) -> None:
    created = {}
    for call in run_script(tmp_path, TOPICS_SCRIPT, prefix):
        opts = parse_create(call)
        assert opts["topic"] not in created, f"{opts['topic']} created twice"
        created[opts["topic"]] = opts
    expected = {prefix + spec.name: spec for spec in TOPICS_TO_CREATE}
    assert sorted(created) == sorted(expected), "the script's topics are the catalogue's (CATALOGUE + INTERNAL_TOPICS)"
    for name, spec in expected.items():
        opts = created[name]
        assert "--if-not-exists" in opts["flags"], name
        assert opts["bootstrap-server"] == "kafka-1:9092"
        assert int(opts["partitions"]) == spec.partitions, f"{name}: partitions"
        assert int(opts["replication-factor"]) == 3, f"{name}: replication factor"
        assert opts["config"] == {**spec.config(), "min.insync.replicas": "2"}, f"{name}: cleanup, retention, min ISR"


def test_compose_topics_job_runs_the_script(compose: dict[str, Any]) -> None:
    job = compose["services"]["topics"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in job["volumes"]}
    script_in_container = job["entrypoint"][-1]
    assert mounts[script_in_container] == "./kafka/create-topics.sh"
    assert job["restart"] == "no"
    assert job["image"] == compose["services"]["kafka-1"]["image"], "the tools of the brokers' own Kafka version"
    env = job["environment"]
    router_env = compose["services"]["router"]["environment"]
    assert env["KAFKA_BOOTSTRAP"] == router_env["KAFKA_BOOTSTRAP"]
    assert env["GRIDHUB_TOPIC_PREFIX"] == router_env["GRIDHUB_TOPIC_PREFIX"], "the services' prefix"
    for broker in ("kafka-1", "kafka-2", "kafka-3"):
        assert job["depends_on"][broker]["condition"] == "service_healthy"


def test_k8s_topics_job_runs_the_same_script(manifests: list[Manifest], compose: dict[str, Any]) -> None:
    maps = {m.name: m for m in manifests if m.kind == "ConfigMap"}
    job = next(m for m in manifests if m.kind == "Job" and m.name == "gridhub-topics")
    spec = pod_spec(job)
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
    script_path = Path(container["command"][-1])
    volume = volumes[mounts[str(script_path.parent)]]
    script_map = maps[volume["configMap"]["name"]]
    assert script_map.doc["data"][script_path.name] == TOPICS_SCRIPT.read_text(encoding="utf-8"), (
        "the Job's ConfigMap holds deploy/kafka/create-topics.sh unchanged"
    )
    assert container["image"] == compose["services"]["topics"]["image"]
    env_from = {ref["configMapRef"]["name"] for ref in container["envFrom"]}
    assert "gridhub-config" in env_from
    shared = maps["gridhub-config"].doc["data"]
    assert shared["KAFKA_BOOTSTRAP"] and shared["GRIDHUB_TOPIC_PREFIX"], "the script's inputs come from the ConfigMap"
    assert int(shared["GRIDHUB_KAFKA_REPLICATION_FACTOR"]) == 3, "topics the init containers create: replication 3"
