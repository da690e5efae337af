"""Bandit allocations: stored in Redis by one replica, held in memory by every replica.

A bandit experiment (`mode: bandit`) keeps bucketing exactly as an A/B test does (GrowthBook
hash v2, coverage, namespace, the visitor's sticky arm); only its arm weights move. Keys:

- `<p>:decisions:bandit:weights`: hash, experiment key -> the allocation in force (JSON:
  version, at, arms, weights, chanceToBeBest, and for the SRM check `expected` visitors per arm
  and the visitor total `counted` when it was set);
- `<p>:decisions:bandit:history:<key>`: list, one JSON entry per allocation (allocation over
  time), trimmed to `bandit_history` entries;
- `<p>:decisions:bandit:version`: incremented with every new allocation; replicas poll it
  (`AllocationWatcher`) and reload the hash only when it moved, so a page view reads weights
  from process memory, never from Redis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from assembly.targeting.bucketing import get_bucket_ranges
from core.redis import Keys
from integration.model import Arms


@dataclass(frozen=True, slots=True)
class Allocation:
    """One experiment's bandit weights, by arm label, as set by update `version`."""

    version: int
    at: float
    labels: tuple[str, ...]
    weights: tuple[float, ...]
    chance: tuple[float, ...] = ()
    expected: Mapping[str, float] = field(default_factory=dict)
    counted: int = 0

    def by_label(self) -> dict[str, float]:
        return dict(zip(self.labels, self.weights, strict=True))

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "at": self.at,
                "arms": list(self.labels),
                "weights": list(self.weights),
                "chanceToBeBest": list(self.chance),
                "expected": dict(self.expected),
                "counted": self.counted,
            }
        )

    @staticmethod
    def decode(raw: bytes | str | None) -> Allocation | None:
        if not raw:
            return None
        try:
            doc = orjson.loads(raw)
            labels = tuple(str(x) for x in doc["arms"])
            weights = tuple(float(x) for x in doc["weights"])
            if len(labels) != len(weights):
                return None
            return Allocation(
                int(doc["version"]),
                float(doc["at"]),
                labels,
                weights,
                tuple(float(x) for x in doc.get("chanceToBeBest") or ()),
                {str(k): float(v) for k, v in (doc.get("expected") or {}).items()},
                int(doc.get("counted") or 0),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class AllocationStore:
    def __init__(self, redis: Redis, keys: Keys, history: int = 1000) -> None:
        self._redis = redis
        self.keys = keys
        self._history = history

    async def version(self) -> int:
        raw: Any = await self._redis.get(self.keys.bandit_version)
        return int(raw) if raw else 0

    async def load(self) -> tuple[int, dict[str, Allocation]]:
        """The global version and every allocation, read together."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.bandit_version)
            pipe.hgetall(self.keys.bandit_weights)
            version, rows = await pipe.execute()
        found = {k.decode(): Allocation.decode(v) for k, v in rows.items()}
        return int(version or 0), {k: a for k, a in found.items() if a is not None}

    async def get(self, experiment: str) -> Allocation | None:
        return Allocation.decode(await self._redis.hget(self.keys.bandit_weights, experiment))

    async def put(self, experiment: str, allocation: Allocation) -> None:
        """Store the allocation, append it to the history, announce it (one transaction)."""
        entry = {
            "version": allocation.version,
            "at": allocation.at,
            "weights": allocation.by_label(),
            "chanceToBeBest": dict(zip(allocation.labels, allocation.chance, strict=False)),
            "visitors": allocation.counted,
        }
        history = self.keys.bandit_history(experiment)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.bandit_weights, experiment, allocation.encode())
            pipe.rpush(history, orjson.dumps(entry))
            pipe.ltrim(history, -self._history, -1)
            pipe.incr(self.keys.bandit_version)
            await pipe.execute()

    async def history(self, experiment: str) -> list[dict[str, Any]]:
        rows: Any = await self._redis.lrange(self.keys.bandit_history(experiment), 0, -1)
        return [orjson.loads(r) for r in rows]


class Allocations:
    """The bandit weights this replica has in force, and the arms reweighted by them.

    `arms` is on the hot path: an A/B experiment returns at the first test, and a bandit's
    reweighted `Arms` (new bucket ranges) is built once per allocation and kept.
    """

    def __init__(self, by_key: Mapping[str, Allocation] | None = None, version: int = 0) -> None:
        self.by_key = dict(by_key or {})
        self.version = version
        self._built: dict[int, tuple[Arms, Arms]] = {}

    def arms(self, arms: Arms) -> Arms:
        if arms.experiment.mode != "bandit":
            return arms
        built = self._built.get(id(arms))
        if built is not None and built[0] is arms:
            return built[1]
        moved = self._reweighted(arms)
        if len(self._built) > 4096:
            self._built.clear()
        self._built[id(arms)] = (arms, moved)
        return moved

    def _reweighted(self, arms: Arms) -> Arms:
        """The arms with the stored weights; unchanged when there are none yet, or when they
        were set for other arms (an arm added or removed since: the next update fits them)."""
        allocation = self.by_key.get(arms.experiment.key)
        if allocation is None or set(allocation.labels) != set(arms.labels):
            return arms
        weights = allocation.by_label()
        ordered = tuple(weights[label] for label in arms.labels)
        ranges = tuple(get_bucket_ranges(len(ordered), arms.experiment.coverage, list(ordered)))
        return dataclasses.replace(arms, weights=ordered, ranges=ranges)


EMPTY_ALLOCATIONS = Allocations()


class AllocationSource(Protocol):
    """Where the engine finds the bandit weights in force (`AllocationWatcher`)."""

    @property
    def allocations(self) -> Allocations: ...
