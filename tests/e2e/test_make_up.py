"""The README's first command: `gridhub up` (what `make up` runs) starts everything and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gridhub.broker import free_port, port_is_free

pytestmark = pytest.mark.broker


def wait_until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll predicate every 0.2 s; fail naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.2)


def closed_tasks(sla_port: int) -> float:
    """gridhub_sla_tasks_closed_total summed over labels."""
    try:
        text = httpx.get(f"http://127.0.0.1:{sla_port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("gridhub_sla_tasks_closed_total")
    )


def test_up_runs_the_demo_loop_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("adapters", "intake", "router", "sla", "notifier", "receiver")}
    broker_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDHUB_") and k != "KAFKA_BOOTSTRAP"}
    env |= {"GRIDHUB_BROKER_PORT": str(broker_port), "GRIDHUB_UP_PORTS": json.dumps(ports), "PYTHONUNBUFFERED": "1"}
    out = (tmp_path / "up.out").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridhub", "up", "--rate", "4", "--data-dir", str(tmp_path / "var")],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: "GridHub is up" in (tmp_path / "up.out").read_text("utf-8"), 90, "the banner")
        # The simulator posts, the demo unit receives, accepts, contacts and resolves: the SLA closes tasks.
        wait_until(lambda: closed_tasks(ports["sla"]) >= 1, 60, "a task closed by the demo unit")
        received = (tmp_path / "var" / "logs" / "receiver.jsonl").read_text("utf-8").splitlines()
        assert received and "task_id" in json.loads(received[0])
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            out.close()
    assert code == 0, (tmp_path / "up.out").read_text("utf-8")
    for name, port in {**ports, "broker": broker_port}.items():
        assert port_is_free("127.0.0.1", port), f"{name} still listening on {port} after Ctrl-C"
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], f"processes left behind: {leftovers}"
