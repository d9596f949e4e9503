"""Which pending deliveries go out next; pure (times are passed in, in epoch milliseconds).

Rules, in the order they apply:

* Per task and endpoint, deliveries go out in the order they were stored: only the oldest unfinished delivery of a
  (task, endpoint) chain is ever eligible; the next one waits until it is delivered or given up (a retrying task
  holds back its own later alerts to that endpoint, never another task's).
* A delivery is due at its next-attempt time (now for a new one, later for a retry).
* Per endpoint: at most `concurrency` attempts in flight (1 while the endpoint is slowed down after a 429 or a
  5xx), a token bucket of `rate_per_s` with `burst`, and a pause until a Retry-After instant the endpoint gave.
  The limits are an endpoint's across the notifier's replicas: each replica sends every endpoint's deliveries of
  its own partitions, so it takes the share of each limit that its partitions are of all (`set_share`; at least
  one attempt in flight and one token).
* When more deliveries are due than can go out, the most urgent go first: the smallest `urgency_ms` (the instant
  the message's SLA falls due: the task's resolve deadline, the alert's due time), ties in storing order.

Endpoints with due work sit in one heap keyed by their most urgent due delivery; an endpoint that cannot send
leaves the heap (at its concurrency limit: until an attempt finishes; out of tokens or paused: until the instant it
may send again), so a backed-up endpoint costs nothing per take.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.notifier.outbox import Job


@dataclass(frozen=True)
class Limits:
    """One endpoint's limits."""

    concurrency: int = 16
    rate_per_s: float = 1000.0
    burst: int = 100
    slow_concurrency: int = 1

    def share(self, fraction: float) -> Limits:
        """This replica's part of the limits when it holds `fraction` of the partitions (at least one of each)."""
        if fraction >= 1.0:
            return self
        return Limits(
            concurrency=max(1, math.ceil(self.concurrency * fraction)),
            rate_per_s=max(self.rate_per_s * fraction, 1e-3),
            burst=max(1, math.ceil(self.burst * fraction)),
            slow_concurrency=self.slow_concurrency,
        )


@dataclass
class _Endpoint:
    limits: Limits
    ready: list[tuple[int, int, int, Job]] = field(default_factory=list)  # (urgency, partition, seq, job)
    in_flight: int = 0
    tokens: float = 0.0
    refilled_ms: int = 0
    slow_until_ms: int = 0
    not_before_ms: int = 0
    version: int = 0
    queued: bool = False

    def refill(self, now_ms: int) -> None:
        if now_ms > self.refilled_ms:
            self.tokens = min(
                float(self.limits.burst), self.tokens + (now_ms - self.refilled_ms) * self.limits.rate_per_s / 1000
            )
            self.refilled_ms = now_ms

    def blocked_until(self, now_ms: int) -> int | None:
        """0 when it may send now; an instant when it may send then; None when only a finished attempt frees it."""
        concurrency = self.limits.slow_concurrency if now_ms < self.slow_until_ms else self.limits.concurrency
        if self.in_flight >= concurrency:
            return None
        if now_ms < self.not_before_ms:
            return self.not_before_ms
        self.refill(now_ms)
        if self.tokens < 1.0:
            return now_ms + max(1, int((1.0 - self.tokens) * 1000 / self.limits.rate_per_s) + 1)
        return 0


class Scheduler:
    """Pending deliveries of every assigned partition, and the endpoints' limits."""

    def __init__(self, limits: Callable[[str], Limits] | None = None) -> None:
        self._limits = limits or (lambda _endpoint: Limits())
        self._share = 1.0
        self._chains: dict[tuple[str, str], deque[Job]] = {}
        self._jobs: dict[str, Job] = {}
        self._in_flight: dict[str, Job] = {}
        self._waiting: list[tuple[int, int, int, str]] = []  # (next_at, partition, seq, delivery id) of chain heads
        self._endpoints: dict[str, _Endpoint] = {}
        self._heap: list[tuple[int, int, int, int, str]] = []  # (urgency, partition, seq, version, endpoint)
        self._wake: list[tuple[int, str]] = []  # (instant, endpoint) for endpoints out of tokens or paused

    # --- contents --------------------------------------------------------------------------------

    def set_share(self, fraction: float) -> None:
        """This replica now holds `fraction` of the partitions: every endpoint's limits scale to it."""
        self._share = min(1.0, max(0.0, fraction))
        for name, endpoint in self._endpoints.items():
            endpoint.limits = self._limits(name).share(self._share)
            endpoint.tokens = min(endpoint.tokens, float(endpoint.limits.burst))

    @property
    def share(self) -> float:
        """The fraction of the partitions this replica holds (1.0 until told otherwise)."""
        return self._share

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._jobs

    def in_flight(self) -> int:
        """Attempts handed out and not finished."""
        return len(self._in_flight)

    def add(self, job: Job) -> None:
        """A pending delivery (stored in the outbox first). A delivery already here is ignored."""
        if job.delivery_id in self._jobs:
            return
        self._jobs[job.delivery_id] = job
        chain = self._chains.get(job.order_key)
        if chain is None:
            chain = self._chains[job.order_key] = deque()
        if chain and (chain[-1].partition, chain[-1].seq) > (job.partition, job.seq):
            # Out of order (a replay of an old delivery): insert by seq; the head stays the head.
            items = sorted([*list(chain)[1:], job], key=lambda j: (j.partition, j.seq))
            head = chain[0]
            chain.clear()
            chain.append(head)
            chain.extend(items)
            return
        chain.append(job)
        if len(chain) == 1:
            heapq.heappush(self._waiting, (job.next_at_ms, job.partition, job.seq, job.delivery_id))

    def add_all(self, jobs: Iterable[Job]) -> None:
        """Add several pending deliveries."""
        for job in jobs:
            self.add(job)

    def drop_partition(self, partition: int) -> None:
        """Forget every delivery of a partition given away (attempts in flight finish, their results ignored)."""
        for delivery_id, job in list(self._jobs.items()):
            if job.partition == partition:
                del self._jobs[delivery_id]
                chain = self._chains.get(job.order_key)
                if chain is not None:
                    self._chains.pop(job.order_key, None)
        for endpoint in self._endpoints.values():
            endpoint.ready = [item for item in endpoint.ready if item[3].partition != partition]
            heapq.heapify(endpoint.ready)

    # --- taking ----------------------------------------------------------------------------------

    def take(self, now_ms: int, limit: int) -> list[Job]:
        """Up to `limit` deliveries to attempt now, most urgent first, within every endpoint's limits."""
        waiting, jobs = self._waiting, self._jobs
        while waiting and waiting[0][0] <= now_ms:
            _, _, _, delivery_id = heapq.heappop(waiting)
            job = jobs.get(delivery_id)
            if job is None or delivery_id in self._in_flight:
                continue
            endpoint = self._endpoint(job.endpoint_id)
            heapq.heappush(endpoint.ready, (job.urgency_ms, job.partition, job.seq, job))
            self._queue(job.endpoint_id, endpoint, force=True)
        while self._wake and self._wake[0][0] <= now_ms:
            _, name = heapq.heappop(self._wake)
            self._queue(name, self._endpoints[name])
        taken: list[Job] = []
        heap = self._heap
        while heap and len(taken) < limit:
            _, _, _, version, name = heapq.heappop(heap)
            endpoint = self._endpoints[name]
            if version != endpoint.version or not endpoint.queued:
                continue
            endpoint.queued = False
            if not endpoint.ready:
                continue
            blocked = endpoint.blocked_until(now_ms)
            if blocked is None:
                continue  # re-queued when one of its attempts finishes
            if blocked:
                heapq.heappush(self._wake, (blocked, name))
                continue
            job = heapq.heappop(endpoint.ready)[3]
            if job.delivery_id not in jobs:
                self._queue(name, endpoint)
                continue
            endpoint.tokens -= 1.0
            endpoint.in_flight += 1
            self._in_flight[job.delivery_id] = job
            taken.append(job)
            self._queue(name, endpoint)
        return taken

    def next_wake_ms(self) -> int | None:
        """The next instant something may become due (None: nothing waits on time)."""
        candidates = [self._waiting[0][0]] if self._waiting else []
        if self._wake:
            candidates.append(self._wake[0][0])
        return min(candidates) if candidates else None

    def has_ready(self) -> bool:
        """Some endpoint could send now (call take)."""
        return bool(self._heap)

    # --- results ---------------------------------------------------------------------------------

    def finished(
        self,
        job: Job,
        next_at_ms: int | None,
        *,
        now_ms: int,
        slow_until_ms: int = 0,
        not_before_ms: int = 0,
    ) -> None:
        """An attempt ended: retry at next_at_ms, or (None) the delivery is over and the chain moves on.

        slow_until_ms: the endpoint answered 429 or 5xx, send to it one at a time until then; not_before_ms: it
        asked (Retry-After) for nothing before then."""
        self._in_flight.pop(job.delivery_id, None)
        endpoint = self._endpoint(job.endpoint_id)
        endpoint.in_flight = max(0, endpoint.in_flight - 1)
        endpoint.slow_until_ms = max(endpoint.slow_until_ms, slow_until_ms)
        endpoint.not_before_ms = max(endpoint.not_before_ms, not_before_ms)
        if job.delivery_id in self._jobs:
            if next_at_ms is None:
                del self._jobs[job.delivery_id]
                chain = self._chains.get(job.order_key)
                if chain is not None:
                    if chain and chain[0].delivery_id == job.delivery_id:
                        chain.popleft()
                    if chain:
                        head = chain[0]
                        heapq.heappush(
                            self._waiting, (max(head.next_at_ms, now_ms), head.partition, head.seq, head.delivery_id)
                        )
                    else:
                        del self._chains[job.order_key]
            else:
                job.next_at_ms = next_at_ms
                heapq.heappush(self._waiting, (next_at_ms, job.partition, job.seq, job.delivery_id))
        self._queue(job.endpoint_id, endpoint)

    def cancel(self, delivery_id: str, *, now_ms: int) -> Job | None:
        """Take a pending delivery out (not one in flight); its chain moves on."""
        job = self._jobs.get(delivery_id)
        if job is None or delivery_id in self._in_flight:
            return None
        self._in_flight[delivery_id] = job
        self._endpoint(job.endpoint_id).in_flight += 1
        self.finished(job, None, now_ms=now_ms)
        return job

    # --- figures ---------------------------------------------------------------------------------

    def oldest_due_ms(self, now_ms: int) -> int | None:
        """The earliest next-attempt time among deliveries due by now and not yet sent (None: none is due)."""
        due = [
            job.next_at_ms
            for job in self._jobs.values()
            if job.next_at_ms <= now_ms and job.delivery_id not in self._in_flight
        ]
        return min(due) if due else None

    # --- internals -------------------------------------------------------------------------------

    def _endpoint(self, name: str) -> _Endpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:
            limits = self._limits(name).share(self._share)
            endpoint = self._endpoints[name] = _Endpoint(limits, tokens=float(limits.burst))
        return endpoint

    def _queue(self, name: str, endpoint: _Endpoint, *, force: bool = False) -> None:
        if not endpoint.ready or (endpoint.queued and not force):
            return
        endpoint.version += 1
        endpoint.queued = True
        urgency, partition, seq, _ = endpoint.ready[0]
        heapq.heappush(self._heap, (urgency, partition, seq, endpoint.version, name))
