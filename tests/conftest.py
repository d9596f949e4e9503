"""Shared fixtures: a real Kafka-compatible broker for the session, chosen in the documented order."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gridhub.broker import EmbeddedBroker


@dataclass(frozen=True)
class Broker:
    """Where the test session's broker is and what it supports."""

    bootstrap: str
    idempotence: bool
    kind: str  # env | testcontainers | embedded-tansu


def docker_daemon_answers() -> bool:
    """True when a Docker daemon (not only the client) responds within 5 s."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """KAFKA_BOOTSTRAP if set; testcontainers Kafka where Docker answers; else embedded Tansu."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        idempotence = os.environ.get("GRIDHUB_KAFKA_IDEMPOTENCE", "true").lower() != "false"
        yield Broker(external, idempotence, "env")
    elif docker_daemon_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield Broker(kafka.get_bootstrap_server(), True, "testcontainers")
    else:
        with EmbeddedBroker() as embedded:
            # Tansu has no InitProducerId, so no idempotent producers on it.
            yield Broker(embedded.bootstrap, False, "embedded-tansu")


@pytest.fixture(scope="session")
def topic_prefix() -> str:
    """A topic and group prefix unique to this test session."""
    return f"t{uuid.uuid4().hex[:10]}."
