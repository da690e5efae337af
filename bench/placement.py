"""Where the benchmark's processes run: the server under test on a core of its own.

On a 2-core machine the server, `redis-server` and `wrk` compete for two cores. Left to the
scheduler, whether the server shares its core with Redis or with wrk changes from run to run,
and the assemble rate with it (2,300 to 4,200 req/s back to back, measured); the hello-world
app, which has no Redis, barely moves. So by default the server (either app, the same way) gets
the first CPU this process may use and the load side (wrk, Redis) the others, as in production,
where the store runs elsewhere. `--no-pin` leaves placement to the scheduler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Placement:
    server: frozenset[int] | None = None  # None: wherever the scheduler puts it
    load: frozenset[int] | None = None

    @staticmethod
    def choose(pin: bool) -> Placement:
        if not pin or not hasattr(os, "sched_getaffinity"):
            return Placement()
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return Placement()
        return Placement(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "unpinned"
        return f"server on CPU {_cpus(self.server)}, wrk and Redis on CPU {_cpus(self.load)}"

    def to_json(self) -> dict[str, list[int] | None]:
        return {
            "server": sorted(self.server) if self.server else None,
            "load": sorted(self.load) if self.load else None,
        }


def on_cpus(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """A `preexec_fn` that runs the child (and every thread it starts) on `cpus`."""
    if cpus is None:
        return None
    chosen = set(cpus)

    def pin_self() -> None:
        os.sched_setaffinity(0, chosen)

    return pin_self


def move(pid: int, cpus: frozenset[int] | None) -> None:
    """Move a running process, every thread of it, onto `cpus`."""
    if cpus is None:
        return
    for thread in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(thread), set(cpus))


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))
