"""The engine's wake-up flag (pure asyncio, no I/O)."""

from __future__ import annotations

import asyncio


class Wake:
    """A flag the loop sleeps on, with a time limit: asyncio.Event under wait_for makes a task per wait, and the
    engine waits once per finished attempt."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """Wake the loop (now, or at its next wait)."""
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        """Forget an earlier set()."""
        self._set = False

    def is_set(self) -> bool:
        """Whether set() was called since the last clear()."""
        return self._set

    async def wait(self, timeout_s: float) -> None:
        """Return when set() is called, or after timeout_s."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
