"""A circuit breaker for the hot path's store read: closed, open, then one probe at a time.

Closed: every page view reads the store. After `threshold` consecutive failures (a budget
that ran out, a refused connection) it opens: page views skip the store for `open_seconds`
and answer degraded at once. Then it is half-open: ONE page view at a time probes the store
while the others keep skipping it. A probe that succeeds closes the breaker; one that fails
opens it again. State changes are logged once each, not per page view.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

log = structlog.get_logger()


class Breaker:
    def __init__(
        self,
        *,
        threshold: int = 3,
        open_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._open_seconds = open_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        if self._failures < self._threshold:
            return "closed"
        return "open" if self._clock() < self._open_until or self._probing else "half-open"

    def acquire(self) -> bool:
        """Whether this call may go to the store; every True must end in one of the three
        calls below (`success`, `failure`, `release`)."""
        if self._failures < self._threshold:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        if self._failures >= self._threshold:
            log.info("assembly.store_breaker.closed")
        self._failures = 0
        self._probing = False

    def failure(self, cause: str) -> None:
        self._failures += 1
        self._probing = False
        if self._failures >= self._threshold:
            self._open_until = self._clock() + self._open_seconds
            if self._failures == self._threshold:
                log.warning(
                    "assembly.store_breaker.opened",
                    cause=cause,
                    failures=self._failures,
                    open_seconds=self._open_seconds,
                )

    def release(self) -> None:
        """The call ended without a verdict (the page view itself was cancelled)."""
        self._probing = False
