"""Kill switches flipped by operators (and by the rollout guardrail), outside Contentful.

They live in Redis (`<p>:decisions:kill_switches`, one field per switch, JSON with who, why and
when), every change is appended to an audit stream (`<p>:decisions:audit`) and announced on
`<p>:decisions:changed`. Each replica keeps an in-memory `SwitchBoard`: the assemble path reads
it without touching Redis. `SwitchWatcher` reloads it on every announcement (milliseconds after
the change) and at least every `kill_switch_poll_seconds`, so a missed message still converges.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson
import structlog
from redis.asyncio import Redis

from assembly import metrics
from core.announcements import follow
from core.redis import Keys

log = structlog.get_logger()

Scope = Literal["global", "template", "slot", "variant"]
SCOPES: tuple[Scope, ...] = ("global", "template", "slot", "variant")
AUDIT_LENGTH = 10_000


@dataclass(frozen=True, slots=True)
class KillSwitch:
    scope: Scope
    key: str  # empty for the global switch
    by: str
    reason: str
    at: float

    @property
    def field(self) -> str:
        return f"{self.scope}:{self.key}"

    @property
    def label(self) -> str:
        """How a decision's reason names it: `global`, `slot home.hero`, ..."""
        return "global" if self.scope == "global" else f"{self.scope} {self.key}"

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "key": self.key or None,
            "by": self.by,
            "reason": self.reason,
            "at": self.at,
        }

    @staticmethod
    def decode(raw: bytes | str) -> KillSwitch | None:
        try:
            doc = orjson.loads(raw)
            scope = doc["scope"]
            if scope not in SCOPES:
                return None
            return KillSwitch(
                scope, doc.get("key") or "", str(doc["by"]), str(doc["reason"]), float(doc["at"])
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class SwitchBoard:
    """The admin switches in force, indexed for O(1) look-ups on the hot path."""

    everything: KillSwitch | None = None
    templates: Mapping[str, KillSwitch] = field(default_factory=dict)
    slots: Mapping[str, KillSwitch] = field(default_factory=dict)
    variants: Mapping[str, KillSwitch] = field(default_factory=dict)

    @staticmethod
    def of(switches: Iterable[KillSwitch]) -> SwitchBoard:
        everything = None
        by_scope: dict[str, dict[str, KillSwitch]] = {"template": {}, "slot": {}, "variant": {}}
        for switch in switches:
            if switch.scope == "global":
                everything = switch
            else:
                by_scope[switch.scope][switch.key] = switch
        return SwitchBoard(everything, by_scope["template"], by_scope["slot"], by_scope["variant"])

    def all(self) -> list[KillSwitch]:
        found = [self.everything] if self.everything else []
        for group in (self.templates, self.slots, self.variants):
            found.extend(group.values())
        return sorted(found, key=lambda s: s.at)


EMPTY_BOARD = SwitchBoard()


class BoardSource(Protocol):
    """Where the engine finds the switches in force (`SwitchWatcher`, or a fixed board)."""

    @property
    def board(self) -> SwitchBoard: ...


@dataclass(frozen=True, slots=True)
class FixedBoard:
    board: SwitchBoard


class KillSwitchStore:
    """Persistence, audit and announcement of admin kill switches."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self.keys = keys

    async def load(self) -> SwitchBoard:
        board, _ = await self.load_marked()
        return board

    async def load_marked(self) -> tuple[SwitchBoard, bool]:
        """The switches, and whether the store still has the marker every change writes."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.kill_switches)
            pipe.exists(self.keys.kill_switch_marker)
            rows, marked = await pipe.execute()
        switches = (s for s in map(KillSwitch.decode, rows.values()) if s is not None)
        return SwitchBoard.of(switches), bool(marked)

    async def restore(self, board: SwitchBoard) -> None:
        """Write back the switches a replica knows, after the store lost them (audited)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            for switch in board.all():
                pipe.hset(self.keys.kill_switches, switch.field, orjson.dumps(switch.to_json()))
                self._audit(pipe, "restore", switch)
            pipe.set(self.keys.kill_switch_marker, b"1")
            await pipe.execute()
        await self._announce(b"restored")

    async def _announce(self, what: str | bytes) -> None:
        """Tell every replica, once the change is committed (a cluster client cannot queue a
        PUBLISH in a transaction; subscribers reload from the store either way)."""
        await self._redis.publish(self.keys.kill_switch_channel, what)

    async def get(self, scope: Scope, key: str) -> KillSwitch | None:
        raw = await self._redis.hget(self.keys.kill_switches, f"{scope}:{key}")
        return None if raw is None else KillSwitch.decode(raw)

    async def set(self, switch: KillSwitch) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.kill_switches, switch.field, orjson.dumps(switch.to_json()))
            pipe.set(self.keys.kill_switch_marker, b"1")
            self._audit(pipe, "set", switch)
            await pipe.execute()
        await self._announce(switch.field)
        log.warning(
            "assembly.kill_switch.set",
            scope=switch.scope,
            key=switch.key or None,
            by=switch.by,
            reason=switch.reason,
        )

    async def clear(self, scope: Scope, key: str, *, by: str, reason: str) -> KillSwitch | None:
        """Remove a switch; the switch that was removed, or None when none was set."""
        name = f"{scope}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.keys.kill_switches, name)
            pipe.hdel(self.keys.kill_switches, name)
            old_raw, removed = await pipe.execute()
        if not removed:
            return None
        old = KillSwitch.decode(old_raw) if old_raw else None
        cleared = KillSwitch(scope, key, by, reason, time.time())
        async with self._redis.pipeline(transaction=True) as pipe:
            self._audit(pipe, "clear", cleared)
            pipe.set(self.keys.kill_switch_marker, b"1")
            await pipe.execute()
        await self._announce(name)
        log.warning(
            "assembly.kill_switch.cleared", scope=scope, key=key or None, by=by, reason=reason
        )
        return old

    def _audit(self, pipe: Any, action: str, switch: KillSwitch) -> None:
        entry = {
            "action": action,
            **{k: v if v is not None else "" for k, v in switch.to_json().items()},
        }
        pipe.xadd(self.keys.kill_switch_audit, entry, maxlen=AUDIT_LENGTH, approximate=True)

    async def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        entries: Any = await self._redis.xrevrange(self.keys.kill_switch_audit, count=limit)
        out = []
        for _, fields in entries:
            doc = {k.decode(): v.decode() for k, v in fields.items()}
            doc["at"] = float(doc.get("at") or 0)
            doc["key"] = doc.get("key") or None
            out.append(doc)
        return out


class SwitchWatcher:
    """Holds this replica's `SwitchBoard` and keeps it current.

    A global switch set while the store is sick is in force here at once (`apply_locally`);
    every `refresh` first stores and announces it, so it reaches the other replicas as soon
    as the store is back (docs/operations.md, runbook).
    """

    def __init__(self, store: KillSwitchStore, poll_seconds: float) -> None:
        self.store = store
        self.board = EMPTY_BOARD
        self.local: KillSwitch | None = None  # the global switch not stored yet
        self._stored = EMPTY_BOARD
        self._poll = poll_seconds
        self._lock = asyncio.Lock()

    def apply_locally(self, switch: KillSwitch | None) -> None:
        """Put a global switch in force on this replica (None: drop the unstored one)."""
        self.local = switch
        self._compose()

    async def refresh(self) -> None:
        async with self._lock:
            if self.local is not None:
                await self._store_local(self.local)
            board, marked = await self.store.load_marked()
            if not marked and not board.all() and self._stored.all():
                board = await self._restore(self._stored)
            if board != self._stored:
                log.info("assembly.kill_switch.loaded", active=len(board.all()))
            self._stored = board
            self._compose()

    async def _restore(self, known: SwitchBoard) -> SwitchBoard:
        """The store came back empty: none of the switches this replica knows may vanish."""
        await self.store.restore(known)
        log.error(
            "assembly.kill_switch.restored",
            detail="the store lost its kill switches; wrote back the ones this replica knew",
            switches=[s.label for s in known.all()],
        )
        return known

    async def _store_local(self, switch: KillSwitch) -> None:
        if await self.store.get("global", "") is None:
            await self.store.set(switch)
        if self.local is switch:
            self.local = None
        log.info("assembly.kill_switch.stored", scope="global", by=switch.by)

    def _compose(self) -> None:
        board = self._stored
        if self.local is not None and board.everything is None:
            board = dataclasses.replace(board, everything=self.local)
        self.board = board
        metrics.KILL_SWITCHES.set(len(board.all()))

    async def run(self, redis: Redis) -> None:
        """Reload on every announcement, and at least every `poll_seconds`; never ends."""
        await follow(
            redis,
            self.store.keys.kill_switch_channel,
            self.refresh,
            poll_seconds=self._poll,
            failed_event="assembly.kill_switch.watch_failed",
        )
