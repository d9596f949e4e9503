"""Liveness and readiness: a service is ready when it is connected to Kafka and has work assigned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Health:
    """Named readiness checks; each returns True when that part is ready."""

    service: str
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], bool]) -> None:
        """Register a readiness check."""
        self.checks[name] = check

    def readiness(self) -> tuple[bool, dict[str, bool]]:
        """Run every check; a check that raises counts as not ready."""
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        return all(results.values()), results
