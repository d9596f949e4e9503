"""Since when each endpoint has failed every attempt (pure; times in epoch milliseconds).

The engine disables an endpoint that has failed every attempt for `disable_after_s`. That span must survive a
restart, or a notifier restarted more often than the span would never disable anything: on assignment each
partition's outbox tells its endpoints' last success and first failure after it (`Outbox.endpoint_health`), and
`seed` merges them in. Partitions are seeded one by one as they are assigned; a success seen anywhere wins over
failures before it.
"""

from __future__ import annotations

from collections.abc import Mapping


class EndpointHealth:
    """Per endpoint: the last successful attempt and the first failed one after it."""

    def __init__(self) -> None:
        self._last_ok: dict[str, int] = {}
        self._failing_since: dict[str, int] = {}

    def succeeded(self, endpoint_id: str, at_ms: int) -> None:
        """An attempt was delivered: the endpoint is not failing."""
        if at_ms >= self._last_ok.get(endpoint_id, 0):
            self._last_ok[endpoint_id] = at_ms
        since = self._failing_since.get(endpoint_id)
        if since is not None and since <= at_ms:
            del self._failing_since[endpoint_id]

    def failed(self, endpoint_id: str, at_ms: int) -> int:
        """An attempt failed; returns since when the endpoint has failed every attempt."""
        since = self._failing_since.get(endpoint_id)
        if since is None or at_ms < since:
            since = self._failing_since[endpoint_id] = at_ms
        return since

    def failing_since(self, endpoint_id: str) -> int | None:
        """Since when it has failed every attempt (None: its last attempt succeeded, or none was made)."""
        return self._failing_since.get(endpoint_id)

    def seed(self, found: Mapping[str, tuple[int, int | None]]) -> None:
        """Merge what one outbox recorded: endpoint → (last success or 0, first failure after it or None)."""
        for endpoint_id, (last_ok, first_failure) in found.items():
            if last_ok:
                self.succeeded(endpoint_id, last_ok)
            known_ok = self._last_ok.get(endpoint_id, 0)
            if first_failure is not None and first_failure > known_ok:
                self.failed(endpoint_id, first_failure)
