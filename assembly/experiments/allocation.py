"""Bandit allocations: stored in Redis by one replica, held in memory by every replica.

A bandit experiment (`mode: bandit`) keeps bucketing exactly as an A/B test does (GrowthBook
hash v2, coverage, namespace, the visitor's sticky arm); only its arm weights move. Keys:

- `<p>:decisions:bandit:weights`: hash, experiment key -> the allocation in force (JSON:
  version, at, arms, weights, chanceToBeBest, and for the SRM check `expected` visitors per arm
  and the visitor total `counted` when it was set);
- `<p>:decisions:bandit:history:<key>`: list, one JSON entry per allocation (allocation over
  time), trimmed to `bandit_history` entries;
- `<p>:decisions:bandit:contextual`: hash, experiment key -> a contextual bandit's parameters
  (`mode: contextual`, `contextual_params`), written with its weights;
- `<p>:decisions:bandit:version`: incremented with every new allocation; replicas poll it
  (`AllocationWatcher`) and reload the hashes only when it moved, so a page view reads weights
  and parameters from process memory, never from Redis.

A contextual experiment is also a bandit: its weights are the rollback, used when it has no
parameters (yet) or broken ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from assembly.experiments.contextual import Policy
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

    async def load(self) -> tuple[int, dict[str, Allocation], dict[str, bytes]]:
        """The global version, every allocation and every contextual parameters document
        (raw), read together."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.bandit_version)
            pipe.hgetall(self.keys.bandit_weights)
            pipe.hgetall(self.keys.bandit_contextual)
            version, rows, params = await pipe.execute()
        found = {k.decode(): Allocation.decode(v) for k, v in rows.items()}
        raw = {k.decode(): bytes(v) for k, v in params.items()}
        return int(version or 0), {k: a for k, a in found.items() if a is not None}, raw

    async def parameters(self, experiment: str) -> bytes | None:
        raw: Any = await self._redis.hget(self.keys.bandit_contextual, experiment)
        return bytes(raw) if raw is not None else None

    async def put_parameters(self, experiment: str, raw: bytes) -> None:
        """Store a contextual bandit's parameters and announce them (one transaction)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.bandit_contextual, experiment, raw)
            pipe.incr(self.keys.bandit_version)
            await pipe.execute()

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

    def __init__(
        self,
        by_key: Mapping[str, Allocation] | None = None,
        version: int = 0,
        policies: Mapping[str, Policy] | None = None,
    ) -> None:
        self.by_key = dict(by_key or {})
        self.version = version
        self.policies = dict(policies or {})
        self._built: dict[int, tuple[Arms, Arms]] = {}

    def policy(self, arms: Arms) -> Policy | None:
        """The contextual policy of a `mode: contextual` experiment, when its parameters were
        fitted for exactly these arms (else None: it buckets by its plain bandit weights)."""
        if arms.experiment.mode != "contextual" or not self.policies:
            return None
        policy = self.policies.get(arms.experiment.key)
        if policy is None or set(policy.labels) != set(arms.labels):
            return None
        return policy

    def arms(self, arms: Arms) -> Arms:
        if arms.experiment.mode == "ab":
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
