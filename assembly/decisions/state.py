"""A visitor's decision state: sticky assignments, frequency counts, and the session's marks.

One Redis hash per visitor id (`<p>:{v:u:<userId>}:decisions`, `<p>:{v:a:<anonymousId>}:decisions`),
read in the same pipeline as the profile. Field names (see docs/decisions.md):

- `a:<test>`: sticky assignment, JSON `{"arm", "variant", "goal", "at"}`; `<test>` is an
  experiment key, or `rollout:<variant>` for a rollout's in/out split;
- `c:<test>`: `1` once the visitor converted in that test;
- `n:<variant>:l`, `n:<variant>:d<yyyymmdd>`, `n:<variant>:w<yyyy>-<ww>`: views of a capped
  variant, lifetime, per UTC day, per ISO week;
- `s:<session>`: Unix time of the session's last write (`<session>`: a short hash of its id);
- `s:<session>:slot:<slot>`: what the slot showed in that session (a variant key, `exp:<key>`);
- `s:<session>:n:<variant>`: views of a capped variant in that session;
- `s:<session>:x:<test>`: `1` once the session's exposure to that test was recorded.

`DecisionState` reads the raw rows lazily: a decision looks up only the fields it needs. Writes
that were decided but not yet flushed by the off-path writer (`pending`) are overlaid, so the next
request of the same visitor on this replica sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

import orjson

from integration.model import CapPeriod

STALE_SCAN_FIELDS = 40  # scan a visitor's hash for stale fields only once it holds this many


@dataclass(slots=True)
class Assignment:
    """A visitor's sticky arm in one test (an experiment, or a rollout's in/out split)."""

    arm: int
    variant: str
    goal: str | None = None
    at: float = 0.0

    def encode(self) -> bytes:
        return orjson.dumps(
            {"arm": self.arm, "variant": self.variant, "goal": self.goal, "at": self.at}
        )

    @staticmethod
    def decode(raw: bytes | str) -> Assignment | None:
        try:
            doc = orjson.loads(raw)
            return Assignment(
                int(doc["arm"]), str(doc["variant"]), doc.get("goal"), float(doc.get("at") or 0)
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(slots=True)
class VisitorWrite:
    """What one request wants written to its visitor's hash (applied by the off-path writer).

    `assignments`: (test, assignment, overwrite): set when absent (experiments: sticky), or
    always (rollouts: the in/out split follows the share). `exposures`: (marker field, exposure),
    recorded only when the marker was absent (once per visitor and session).
    """

    key: str
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    at: float
    assignments: list[tuple[str, Assignment, bool]] = field(default_factory=list)
    exposures: list[tuple[str, Exposure]] = field(default_factory=list)
    sets: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    incr: dict[str, int] = field(default_factory=dict)
    touched: bool = False  # writes session fields (then the session's last-write time too)
    durable: bool = False  # the hash already holds what must outlive sessions (arms, counts)
    ttl: int = 0  # seconds the hash must live after this write (set by the writer); 0: default

    def __bool__(self) -> bool:
        return bool(self.assignments or self.exposures or self.sets or self.deletes or self.incr)


@dataclass(slots=True)
class TestMeta:
    """What results need to know of a test: its arms, their intended shares, its goal."""

    kind: str  # "experiment" or "rollout"
    arms: tuple[str, ...]
    weights: tuple[float, ...]
    goal: str | None

    def encode(self) -> bytes:
        return orjson.dumps(
            {"kind": self.kind, "arms": self.arms, "weights": self.weights, "goal": self.goal}
        )

    @staticmethod
    def decode(raw: bytes | str | None) -> TestMeta | None:
        if not raw:
            return None
        try:
            doc = orjson.loads(raw)
            return TestMeta(
                str(doc["kind"]),
                tuple(str(a) for a in doc["arms"]),
                tuple(float(w) for w in doc["weights"]),
                doc.get("goal"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(slots=True)
class Exposure:
    """One test served to a visitor in a session; recorded once per visitor and session."""

    test: str
    arm: int
    variant: str
    slot: str
    meta: TestMeta


@dataclass(frozen=True, slots=True)
class Periods:
    """Field tags of the counting periods at one moment (UTC)."""

    day: str
    week: str

    @staticmethod
    def at(now: datetime) -> Periods:
        return _periods(now.date())

    def tag(self, per: CapPeriod) -> str:
        if per == "day":
            return self.day
        if per == "week":
            return self.week
        return "l"


@lru_cache(maxsize=16)
def _periods(day: date) -> Periods:
    year, week, _ = day.isocalendar()
    return Periods(day=f"d{day:%Y%m%d}", week=f"w{year}-{week:02d}")


def session_tag(session_id: str) -> str:
    """A short, field-safe name for a session id."""
    return hashlib.blake2b(session_id.encode(), digest_size=8).hexdigest()


def count_field(variant: str, per: CapPeriod, periods: Periods, session: str | None) -> str | None:
    if per == "session":
        return None if session is None else f"s:{session}:n:{variant}"
    return f"n:{variant}:{periods.tag(per)}"


class DecisionState:
    """The decision state of one visitor, over the raw hash rows (primary id first)."""

    __slots__ = ("_markers", "key", "pending", "rows", "session")

    def __init__(
        self,
        rows: tuple[Mapping[bytes, bytes], ...] = (),
        pending: tuple[VisitorWrite, ...] = (),
        session: str | None = None,
        key: str | None = None,
    ) -> None:
        self.rows = rows
        self.pending = pending
        self.session = session  # the session's tag (`session_tag`), None without a session id
        self.key = key  # the hash that writes go to (the primary id's); None: nothing is written
        self._markers: dict[str, str | None] = {}

    def _row(self, name: str) -> bytes | None:
        raw = name.encode()
        for row in self.rows:
            value = row.get(raw)
            if value is not None:
                return value
        return None

    def assignment(self, test: str) -> Assignment | None:
        for write in reversed(self.pending):
            for name, assignment, overwrite in write.assignments:
                if overwrite and name == test:
                    return assignment
        raw = self._row(f"a:{test}")
        if raw is not None:
            return Assignment.decode(raw)
        for write in self.pending:
            for name, assignment, _ in write.assignments:
                if name == test:
                    return assignment
        return None

    def count(self, name: str) -> int:
        raw = name.encode()
        total = 0
        for row in self.rows:
            value = row.get(raw)
            if value is not None:
                total += int(value)
        for write in self.pending:
            total += write.incr.get(name, 0)
        return total

    def session_marker(self, slot: str) -> str | None:
        """What the slot showed earlier in this session (memoized: decisions and writes ask)."""
        if self.session is None:
            return None
        if slot in self._markers:
            return self._markers[slot]
        found = self._marker(f"s:{self.session}:slot:{slot}")
        self._markers[slot] = found
        return found

    def _marker(self, name: str) -> str | None:
        for write in reversed(self.pending):
            if name in write.deletes:
                return None
            if name in write.sets:
                return write.sets[name].decode()
        value = self._row(name)
        return value.decode() or None if value is not None else None

    def exposed(self, test: str) -> bool:
        if self.session is None:
            return False
        marker = f"s:{self.session}:x:{test}"
        if self._row(marker) is not None:
            return True
        return any(m == marker for w in self.pending for m, _ in w.exposures)

    def converted(self, test: str) -> bool:
        return self._row(f"c:{test}") is not None

    def durable(self) -> bool:
        """The primary row holds what outlives weeks (an arm, a conversion, a lifetime count):
        any write then renews the visitor's full lifetime."""
        return bool(self.rows) and any(_durable_field(name) for name in self.rows[0])

    def stale_fields(self, periods: Periods, now: float, session_ttl: float) -> list[str]:
        """Fields of the primary row that no longer count: old periods, sessions gone idle."""
        if not self.rows or len(self.rows[0]) < STALE_SCAN_FIELDS:
            return []
        return stale_fields(self.rows[0], periods, now - session_ttl)


def stale_fields(row: Mapping[bytes, bytes], periods: Periods, idle_before: float) -> list[str]:
    names = [k.decode() for k in row]
    gone = {
        name[2:]
        for name in names
        if name.startswith("s:")
        and name.count(":") == 1
        and _number(row[name.encode()]) < idle_before
    }
    stale = []
    current = {periods.day, periods.week, "l"}
    for name in names:
        if name.startswith("n:"):
            if name.rsplit(":", 1)[1] not in current:
                stale.append(name)
        elif name.startswith("s:") and name[2:].split(":", 1)[0] in gone:
            stale.append(name)
    return stale


def _durable_field(name: bytes) -> bool:
    return name.startswith((b"a:", b"c:")) or (name.startswith(b"n:") and name.endswith(b":l"))


def _number(raw: bytes) -> float:
    try:
        return float(raw)
    except ValueError:
        return 0.0


def decode_assignments(
    rows: list[Mapping[bytes, bytes]],
) -> dict[str, tuple[int, Assignment, bool]]:
    """Every sticky assignment of a visitor: test → (row index, assignment, converted already).

    Rows come primary first; the first row that holds a test wins.
    """
    found: dict[str, tuple[int, Assignment, bool]] = {}
    for index, row in enumerate(rows):
        for raw_name, raw_value in row.items():
            if not raw_name.startswith(b"a:"):
                continue
            test = raw_name[2:].decode()
            if test in found:
                continue
            assignment = Assignment.decode(raw_value)
            if assignment is not None:
                marker = b"c:" + raw_name[2:]
                found[test] = (index, assignment, any(marker in r for r in rows))
    return found


EMPTY_STATE = DecisionState()


class PendingWrites:
    """Writes handed to the off-path writer and not yet flushed, by visitor hash key.

    The next request of the same visitor on this replica overlays them on what it read, so a
    sticky assignment, a session mark or a frequency count holds before the write lands.
    """

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[str, list[VisitorWrite]] = {}

    def add(self, write: VisitorWrite) -> None:
        self._by_key.setdefault(write.key, []).append(write)

    def done(self, writes: list[VisitorWrite]) -> None:
        for write in writes:
            queued = self._by_key.get(write.key)
            if queued is None:
                continue
            with contextlib.suppress(ValueError):
                queued.remove(write)
            if not queued:
                del self._by_key[write.key]

    def of(self, keys: list[str]) -> tuple[VisitorWrite, ...]:
        if not self._by_key:
            return ()
        found: list[VisitorWrite] = []
        for key in keys:
            found.extend(self._by_key.get(key, ()))
        return tuple(found)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_key.values())
