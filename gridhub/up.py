"""`gridhub up`: the whole hub on one machine, each service its own process, stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICES = ("intake", "router", "sla", "notifier", "adapters")
# The ops page (services/console): started once the five are ready; the hub runs on without it if it fails.
CONSOLE = "console"
PORTS = {
    "adapters": 8000,
    "intake": 8101,
    "router": 8102,
    "sla": 8103,
    "notifier": 8104,
    CONSOLE: 8105,
    "receiver": 8200,
}


@dataclass
class Supervisor:
    """Starts child processes, waits for their readiness, and stops every one of them."""

    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        """Start one child with its output in log_dir/<name>.log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as out:
            # A session of its own: Ctrl-C reaches only `gridhub up`, which then stops the services
            # before the broker they need for a clean shutdown.
            self.procs[name] = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def wait_ready(self, urls: dict[str, str], timeout_s: float) -> None:
        """Poll each readiness URL until 200; raise naming the laggards."""
        deadline = time.monotonic() + timeout_s
        pending = dict(urls)
        while pending and time.monotonic() < deadline:
            for name, url in list(pending.items()):
                proc = self.procs[name]
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=1).status_code == 200:
                        del pending[name]
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not ready after {timeout_s} s: {sorted(pending)}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every child, then SIGKILL those still running after timeout_s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.procs.clear()


def service_env(
    base: dict[str, str], bootstrap: str, idempotence: bool, data_dir: Path, receiver_url: str, adapters_url: str
) -> dict[str, str]:
    """Environment for the demo hub's children."""
    env = dict(base)
    env.setdefault("GRIDHUB_MODE", "dev")
    env["KAFKA_BOOTSTRAP"] = bootstrap
    env["GRIDHUB_KAFKA_IDEMPOTENCE"] = "true" if idempotence else "false"
    env["GRIDHUB_DATA_DIR"] = str(data_dir)
    env.setdefault("GRIDHUB_NOTIFIER_DEFAULT_WEBHOOK", receiver_url)
    env.setdefault("GRIDHUB_DEMO_ADAPTERS_URL", adapters_url)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def command(*args: str) -> list[str]:
    """argv that runs a gridhub sub-command with this interpreter."""
    return [sys.executable, "-m", "gridhub", *args]


class UpSettings(BaseSettings):
    """What `gridhub up` needs to know: an external cluster, or where to run the embedded broker."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "GRIDHUB_KAFKA_BOOTSTRAP")
    )
    kafka_idempotence: bool = True
    broker_port: int = Field(9092, description="Port of the embedded broker.")
    up_ports: dict[str, int] = Field(
        default_factory=lambda: dict(PORTS), description="Ports of the services and the demo receiver."
    )


EXAMPLE_ORDER = (
    '{"order_no":"DEMO-1","appeal_type":"投诉","content":"小区下水道反流",'
    '"call_time":"2026-11-20T09:30:00+08:00","grid_code":"PA-CG-01-001"}'
)


def console_env(ports: dict[str, int]) -> dict[str, str]:
    """The console's port and where it finds the five services."""
    env = {f"GRIDHUB_{CONSOLE.upper()}_{name.upper()}_URL": f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
    env[f"GRIDHUB_{CONSOLE.upper()}_PORT"] = str(ports[CONSOLE])
    return env


def print_banner(log_dir: Path, bootstrap: str, p: dict[str, int], console_up: bool = True) -> None:
    """Where to look once the hub is up."""
    metrics = " ".join(f":{p[name]}" for name in ("intake", "router", "sla", "notifier"))
    ops = f"http://127.0.0.1:{p[CONSOLE]}/ops" if console_up else f"(not running; see {log_dir / 'console.log'})"
    print(
        f"""
GridHub is up (Kafka at {bootstrap}). Ctrl-C stops everything.

  Operations page       {ops}
  API docs (adapters)   http://127.0.0.1:{p["adapters"]}/docs
  Post a work order     curl -s -X POST http://127.0.0.1:{p["adapters"]}/v1/12345/work-orders \\
                          -H 'X-Api-Key: dev-12345-key' -H 'content-type: application/json' \\
                          -d '{EXAMPLE_ORDER}'
  Task clock (SLA)      http://127.0.0.1:{p["sla"]}/tasks/<task_id>
  Metrics               http://127.0.0.1:{p["adapters"]}/metrics, and /metrics on {metrics}
  Webhooks received     {log_dir / "receiver.jsonl"}
  Service logs          {log_dir}/<service>.log
""",
        flush=True,
    )


def start_console(sup: Supervisor, env: dict[str, str], port: int, timeout_s: float) -> bool:
    """Start the ops page and wait for it; False (and a warning) when it does not come up (its port taken, say)."""
    sup.spawn(CONSOLE, command("serve", CONSOLE), env)
    try:
        sup.wait_ready({CONSOLE: f"http://127.0.0.1:{port}/readyz"}, timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        print(f"the operations page did not start ({exc}); the hub runs without it", file=sys.stderr)
        return False
    return True


def run_up(rate: float, simulate: bool, data_dir: Path, ready_timeout_s: float = 60.0) -> int:
    """Run broker (unless KAFKA_BOOTSTRAP), topics, five services, the ops page, receiver and simulator until
    Ctrl-C."""
    from gridhub.broker import EmbeddedBroker

    log_dir = data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = UpSettings()
    broker = None
    if settings.kafka_bootstrap is None:
        broker = EmbeddedBroker(port=settings.broker_port, log_path=log_dir / "broker.log")
        bootstrap = broker.start()
        idempotence = False  # Tansu has no InitProducerId
    else:
        bootstrap, idempotence = settings.kafka_bootstrap, settings.kafka_idempotence
    base = dict(os.environ)  # the children inherit the caller's environment, settings included
    ports = {**PORTS, **settings.up_ports}
    receiver_url = f"http://127.0.0.1:{ports['receiver']}/webhook"
    adapters_url = f"http://127.0.0.1:{ports['adapters']}"
    env = service_env(base, bootstrap, idempotence, data_dir, receiver_url, adapters_url)
    env.update({f"GRIDHUB_{name.upper()}_PORT": str(ports[name]) for name in SERVICES})
    env.update(console_env(ports))
    sup = Supervisor(log_dir)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return  # a second Ctrl-C must not interrupt the orderly stop below
        stopping = True
        raise KeyboardInterrupt

    # Explicitly, for SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        subprocess.run(command("topics", "create"), env=env, check=True)
        sup.spawn(
            "receiver",
            command(
                "demo",
                "receiver",
                "--port",
                str(ports["receiver"]),
                "--log",
                str(log_dir / "receiver.jsonl"),
                "--act-after",
                "6",
            ),
            env,
        )
        for name in SERVICES:
            sup.spawn(name, command("serve", name), env)
        sup.wait_ready({name: f"http://127.0.0.1:{ports[name]}/readyz" for name in SERVICES}, ready_timeout_s)
        console_up = start_console(sup, env, ports[CONSOLE], ready_timeout_s)
        if simulate:
            sup.spawn("simulator", command("demo", "simulate", "--rate", str(rate), "--url", adapters_url), env)
        print_banner(log_dir, bootstrap, ports, console_up)
        while not stopping:
            for name, proc in sup.procs.items():
                if proc.poll() is None or name == "simulator":
                    continue
                if name == CONSOLE:  # the page is a convenience: the hub carries on without it
                    if console_up:
                        print(f"the operations page exited; see {log_dir / 'console.log'}", file=sys.stderr)
                        console_up = False
                    continue
                print(f"{name} exited with {proc.returncode}; see {log_dir / (name + '.log')}", file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        print("\nstopping GridHub...", flush=True)
        return 0
    finally:
        sup.stop()
        if broker is not None:
            broker.stop()
