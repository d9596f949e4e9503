"""The kernel runs a service's coroutine on the loop its settings name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gridhub.kernel.settings import CommonSettings

PROBE = """
import asyncio
from gridhub.kernel.runtime import run
from gridhub.kernel.settings import CommonSettings

async def main():
    return type(asyncio.get_running_loop()).__module__

print(run(main(), CommonSettings(event_loop={choice!r})))
"""


@pytest.mark.parametrize(("choice", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio.unix_events")])
def test_the_setting_picks_the_event_loop(choice: str, module: str) -> None:
    # A process of its own: the test session's loop is already running here.
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(choice=choice)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == module


def test_uvloop_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRIDHUB_EVENT_LOOP", raising=False)
    assert CommonSettings().event_loop == "uvloop"


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="event_loop"):
        CommonSettings(event_loop="trio")  # type: ignore[arg-type]
