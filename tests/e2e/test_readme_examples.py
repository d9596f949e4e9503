"""The README's examples for county IT and for a department, run as written against a hub of their own.

Only the hub's addresses change (the test's free ports in place of `make up`'s defaults) and `.venv/bin/python`
becomes this interpreter; the shell, the JSON, the keys and the receiver are the README's own text.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridhub.broker import free_port
from gridhub.up import CONSOLE, PORTS, SERVICES
from tests.conftest import Broker
from tests.e2e.conftest import Hub, running_hub

pytestmark = pytest.mark.broker

README = Path(__file__).resolve().parents[2] / "README.md"
README_RECEIVER_PORT = 9001
WAIT_S = 60.0


def section(title: str) -> str:
    """The README text under a ### heading, up to the next heading of any level up to 3."""
    text = README.read_text("utf-8")
    start = text.index(f"### {title}")
    end = re.compile(r"^#{2,3} ", re.M).search(text, start + 4)
    return text[start : end.start() if end else len(text)]


def shell_blocks(text: str) -> list[str]:
    """The ```sh blocks of a text, in order."""
    return re.findall(r"```sh\n(.*?)```", text, re.S)


def localised(block: str, hub: Hub, receiver_port: int) -> str:
    """A README block aimed at the test's hub instead of `make up`'s default ports."""
    for name in (*SERVICES, CONSOLE):
        block = block.replace(f"127.0.0.1:{PORTS[name]}", f"127.0.0.1:{hub.ports[name]}")
    block = block.replace(f"127.0.0.1:{README_RECEIVER_PORT}", f"127.0.0.1:{receiver_port}")
    block = block.replace(f'("127.0.0.1", {README_RECEIVER_PORT})', f'("127.0.0.1", {receiver_port})')
    return block.replace(".venv/bin/python", sys.executable)


def bash(script: str, timeout_s: float = WAIT_S) -> str:
    """Run a script in bash with -e and pipefail; its stdout."""
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def readme_hub(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, int]]:
    """Five services on their own prefix, the notifier allowed to call the README's receiver port (a free one)."""
    receiver_port = free_port()
    # As the README's terminal 1 does (with 9001 there); its own prefix, so none of the session hub's tasks go there.
    allow = {"GRIDHUB_NOTIFIER_OUTBOUND_ALLOWLIST": f'["127.0.0.1:{receiver_port}"]'}
    with running_hub(
        broker,
        f"readme-{uuid.uuid4().hex[:8]}.",
        tmp_path_factory.mktemp("readme-hub"),
        f"http://127.0.0.1:{free_port()}/nobody",
        extra_env=allow,
        console=True,
    ) as hub:
        yield hub, receiver_port


def test_the_it_example_accepts_then_repeats_refuses_a_bad_one_and_counts(readme_hub: tuple[Hub, int]) -> None:
    hub, receiver_port = readme_hub
    [block] = shell_blocks(section("County IT"))
    out = bash(localised(block, hub, receiver_port))
    first, second = [line for line in out.splitlines() if line.endswith((" 202", " 200"))]
    assert first.endswith(" 202") and second.endswith(" 200"), out
    event_ids = {re.search(r'"event_id":"(\w+)"', line).group(1) for line in (first, second)}  # type: ignore[union-attr]
    assert len(event_ids) == 1, out  # the repeat answers with the same event
    assert '"status":422' in out and "order_no" in out, out
    assert re.search(r'gridhub_adapters_reports_total\{channel="12345",outcome="accepted"\} 1\.0', out), out
    assert re.search(r'gridhub_adapters_reports_total\{channel="12345",outcome="duplicate"\} 1\.0', out), out


def test_the_department_example_registers_receives_a_verified_task_and_lists_attempts(
    readme_hub: tuple[Hub, int], tmp_path: Path
) -> None:
    hub, receiver_port = readme_hub
    _hub_block, register_and_receive, post_and_query = shell_blocks(section("A department"))
    out_path = tmp_path / "receiver.out"
    with out_path.open("w") as out:
        receiver = subprocess.Popen(
            ["bash", "-c", "set -euo pipefail\n" + localised(register_and_receive, hub, receiver_port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while not listening(receiver_port):
            assert receiver.poll() is None, out_path.read_text("utf-8")
            assert time.monotonic() < deadline, "receiver did not start: " + out_path.read_text("utf-8")
            time.sleep(0.1)
        endpoint_query = localised(post_and_query, hub, receiver_port)
        # The README leaves the endpoint id to the reader; the registration's answer is not printed, so ask the API.
        endpoint_id = bash(
            f"curl -s http://127.0.0.1:{hub.ports['notifier']}/v1/endpoints -H 'Authorization: Bearer dev-PA-ZJJ'"
            " | " + sys.executable + " -c 'import json,sys; print(json.load(sys.stdin)[0][\"endpoint_id\"])'"
        ).strip()
        answer = bash(endpoint_query.replace("<endpoint_id>", endpoint_id))
        assert '"status":"accepted"' in answer, answer
        deadline = time.monotonic() + WAIT_S
        # The unit gets every task of its own from now on: the IT example's street light too, when it was routed
        # after the registration. The README's manhole cover is the one this example sends.
        while not (lines := [x for x in out_path.read_text("utf-8").splitlines() if "井盖" in x]):
            assert receiver.poll() is None, out_path.read_text("utf-8")
            assert time.monotonic() < deadline, out_path.read_text("utf-8")
            time.sleep(0.2)
        line = lines[0]  # at least once: a retry may print it again
        assert line.startswith("task_") and " primary " in line and "井盖" in line, line
        query = (
            f"curl -s 'http://127.0.0.1:{hub.ports['notifier']}/deliveries?endpoint_id={endpoint_id}'"
            " -H 'Authorization: Bearer dev-operator-key'"
        )
        deadline = time.monotonic() + 10
        while '"outcome":"delivered"' not in (attempts := bash(query)):  # recorded just after the receiver's 204
            assert time.monotonic() < deadline, attempts
            time.sleep(0.2)
    finally:
        os.killpg(receiver.pid, signal.SIGTERM)
        receiver.wait(timeout=10)


def listening(port: int) -> bool:
    """Whether something accepts connections on a loopback port."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_operator_example_reads_the_page_the_metrics_and_a_prometheus(
    readme_hub: tuple[Hub, int], tmp_path: Path
) -> None:
    hub, receiver_port = readme_hub
    [block] = shell_blocks(section("An operator"))
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("Debian's prometheus is not installed (make test installs it)")
    # The README's Prometheus config, aimed at this hub; its rules beside it as in deploy/prometheus/.
    config_dir = tmp_path / "prometheus"
    shutil.copytree(README.parent / "deploy" / "prometheus", config_dir)
    local = config_dir / "local.yml"
    local.write_text(localised(local.read_text("utf-8"), hub, receiver_port), "utf-8")
    logs = tmp_path / "logs"
    logs.mkdir()
    web = f"127.0.0.1:{free_port()}"
    script = (
        localised(block, hub, receiver_port)
        .replace("deploy/prometheus/local.yml", str(local))
        .replace("var/prometheus", str(tmp_path / "tsdb"))
        .replace("var/logs/", f"{logs}/")
        .replace("127.0.0.1:9090", web)
    )
    # A session of its own: the Prometheus the script leaves running in the background is in its process group.
    proc = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, out + err
        assert "'adapters': True" in out and "Throughput by channel" in out, out  # the page's JSON, read
        assert "gridhub_router_consumer_lag_messages{" in out and "gridhub_router_triage_backlog_events{" in out, out
        answer = json.loads(out.strip().splitlines()[-1])
        assert answer["status"] == "success", answer
        channels = {r["metric"].get("channel") for r in answer["data"]["result"]}
        assert "12345" in channels, answer  # the IT and department examples' work orders, scraped
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # bash, if still there, and the Prometheus it started
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while listening(int(web.rsplit(":", 1)[1])):
            assert time.monotonic() < deadline, "the README's Prometheus did not stop"
            time.sleep(0.1)
