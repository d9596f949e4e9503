"""Fixtures of the operations tests: a hub of its own on the session's broker, and a real Prometheus scraping it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gridhub.broker import free_port
from tests.conftest import Broker
from tests.e2e.conftest import Hub, Receiver, running_hub
from tests.e2e.conftest import receiver as receiver  # the e2e webhook receiver, as a fixture of this directory too

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
HUB_READY_S = 90.0
PROMETHEUS_READY_S = 30.0


def prometheus_binary(name: str) -> str:
    """Path of `prometheus` or `promtool`; skip the test with the reason when the Debian package is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (apt-get install -y --no-install-recommends prometheus)")
    return path


@pytest.fixture(scope="module")
def ops_hub(
    broker: Broker, topic_prefix: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    """The five services as processes on topics and groups of their own (not the e2e hub's), ready; stopped after
    the module, so a session running tests/e2e too does not keep two idle hubs on its two cores."""
    prefix = f"{topic_prefix}ops{uuid.uuid4().hex[:6]}."
    with running_hub(broker, prefix, tmp_path_factory.mktemp("ops-hub"), receiver.url, ready_s=HUB_READY_S) as hub:
        yield hub


@dataclass(frozen=True)
class Prometheus:
    """A running Prometheus server and how to ask it."""

    url: str
    log: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query's result vector (optionally at a Unix time)."""
        params: dict[str, str] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=5)
        except httpx.TransportError:  # once more, on a loaded machine
            answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=5)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of a query that answers one series, or None when it answers none."""
        result = self.query(expr, at)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, check: Any, timeout_s: float, what: str) -> list[dict[str, Any]]:
        """Poll a query until check(result) is true; fail naming `what` (and the last answer) after timeout_s."""
        deadline = time.monotonic() + timeout_s
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                result = self.query(expr)
                if check(result):
                    return result
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout_s} s; last answer {result}; log {self.log}")


def scrape_config(targets: dict[str, int], interval_s: int = 1) -> str:
    """A Prometheus config scraping each job's /metrics on its loopback port every interval_s."""
    lines = [
        "global:",
        f"  scrape_interval: {interval_s}s",
        f"  scrape_timeout: {interval_s}s",
        f"  evaluation_interval: {interval_s}s",
        "rule_files:",
        f"  - {PROMETHEUS_DIR / 'rules' / 'gridhub.rules.yml'}",
        "scrape_configs:",
    ]
    for job, port in sorted(targets.items()):
        lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: ['127.0.0.1:{port}']"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_prometheus(targets: dict[str, int], workdir: Path) -> Iterator[Prometheus]:
    """Start `prometheus` scraping `targets` (job -> port) with its storage in workdir; stopped on exit."""
    binary = prometheus_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(scrape_config(targets), "utf-8")
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROMETHEUS_READY_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}: {log.read_text('utf-8', 'replace')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready within {PROMETHEUS_READY_S} s: {log}")
            time.sleep(0.2)
        yield Prometheus(url, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
