"""One visitor's profile as the consumer holds it, its Redis hash encoding, and merging.

Hash fields (`<prefix>:{v:<id>}:profile`, docs/events.md "Profile store"):

| field | content | read by /v1/assemble |
| --- | --- | --- |
| `traits` | JSON object | yes |
| `audiences` | JSON list of audience keys | yes |
| `consent` | `1` / `0`, absent when unknown | yes |
| `signals` | JSON: `visits`, `sessions`, `lastSeen`, `dwell`, `recentEvents`, ... | yes |
| `live` | JSON: open view, cart, engagement scores; turned into signals at read time | yes |
| `canonical` | on an alias id (anonymousId, aliased userId): the id it mirrors | yes |
| `links` | on a merged profile: JSON list of the ids that mirror it | no |
| `audAt` | JSON: audience key → `[member 1/0, event time]` of its last change (freshness) | yes |

Visitor ids are typed: `u:<userId>` and `a:<anonymousId>`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from segment_sync.config import SignalRules

AUDIENCE_TIMES_FIELD = "audAt"
HOT_FIELDS = (
    "traits",
    "audiences",
    "signals",
    "consent",
    "live",
    "canonical",
    AUDIENCE_TIMES_FIELD,
)
MAX_AUDIENCE_TIMES = 500  # audience keys whose last change is remembered per profile
_KNOWN_SIGNALS = frozenset({"visits", "sessions", "dwell", "recentEvents"})


@dataclass(slots=True)
class View:
    """A product or page view still open: it counts as dwell time until the next event.

    `cap` and `timeout` are the rules when it opened, so that reads need no settings.
    """

    product: str | None
    category: str | None
    at: float
    cap: float
    timeout: float


@dataclass(slots=True)
class Cart:
    """The open cart; `due` is when it counts as abandoned (the window when it was updated)."""

    products: list[str]
    at: float
    due: float


@dataclass(slots=True)
class Behaviour:
    visits: int = 0
    sessions: int = 0
    last_seen: float | None = None
    session_id: str | None = None
    dwell: dict[str, float] = field(default_factory=dict)
    engagement: dict[str, tuple[float, float]] = field(default_factory=dict)  # (score, at)
    view: View | None = None
    cart: Cart | None = None
    ordered_at: float | None = None
    half_life: float | None = None  # of the engagement scores, as written
    recent: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # stored signals we do not derive

    @property
    def tracked(self) -> bool:
        """Whether the consumer has derived anything (then read-time signals are added)."""
        return self.last_seen is not None or self.cart is not None or bool(self.engagement)

    @property
    def empty(self) -> bool:
        return not (
            self.tracked
            or self.visits
            or self.sessions
            or self.dwell
            or self.recent
            or self.extra
            or self.view is not None
            or self.ordered_at is not None
        )


@dataclass(slots=True)
class ProfileState:
    traits: dict[str, Any] = field(default_factory=dict)
    audiences: set[str] = field(default_factory=set)
    consent: bool | None = None
    behaviour: Behaviour = field(default_factory=Behaviour)
    canonical: str | None = None
    links: list[str] = field(default_factory=list)
    audience_times: dict[str, tuple[bool, float]] = field(default_factory=dict)
    """Audience key → (member, event time) of the last change applied (event-time order)."""

    @property
    def empty(self) -> bool:
        return (
            not (self.traits or self.audiences or self.consent is not None or self.audience_times)
            and self.behaviour.empty
        )

    def change_audience(self, key: str, member: bool, at: float) -> bool:
        """Enter or exit `key` as of event time `at`, unless a newer change was applied
        already (a late, older `Entered` must not undo a newer `Exited`); whether it applied."""
        last = self.audience_times.get(key)
        if last is not None and at < last[1]:
            return False
        self.audience_times[key] = (member, at)
        if member:
            self.audiences.add(key)
        else:
            self.audiences.discard(key)
        if len(self.audience_times) > MAX_AUDIENCE_TIMES:
            oldest = min(self.audience_times, key=lambda k: self.audience_times[k][1])
            del self.audience_times[oldest]
        return True


# ---------------------------------------------------------------- time


def iso(epoch: float) -> str:
    """`2012-12-02T00:30:12.984Z` (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def decay(seconds: float, half_life: float) -> float:
    return math.pow(0.5, max(seconds, 0.0) / half_life)


# ---------------------------------------------------------------- decoding


def decode_row(row: Mapping[bytes, bytes]) -> ProfileState:
    """A profile hash (HGETALL or HMGET of HOT_FIELDS zipped) as a state; missing parts empty."""
    state = ProfileState()
    raw = row.get(b"traits")
    if raw:
        state.traits = _object(orjson.loads(raw))
    raw = row.get(b"audiences")
    if raw:
        audiences = orjson.loads(raw)
        state.audiences = (
            {a for a in audiences if isinstance(a, str)} if isinstance(audiences, list) else set()
        )
    raw = row.get(b"consent")
    if raw is not None:
        state.consent = raw == b"1"
    raw = row.get(b"canonical")
    if raw:
        state.canonical = raw.decode()
    raw = row.get(b"links")
    if raw:
        state.links = [link for link in orjson.loads(raw) if isinstance(link, str)]
    raw = row.get(AUDIENCE_TIMES_FIELD.encode())
    if raw:
        state.audience_times = _audience_times(orjson.loads(raw))
    state.behaviour = _behaviour(row.get(b"signals"), row.get(b"live"))
    return state


def _behaviour(signals_raw: bytes | None, live_raw: bytes | None) -> Behaviour:
    b = Behaviour()
    if signals_raw:
        signals = _object(orjson.loads(signals_raw))
        b.visits = _int(signals.get("visits"))
        b.sessions = _int(signals.get("sessions"))
        dwell = signals.get("dwell")
        if isinstance(dwell, dict):
            b.dwell = {k: float(v) for k, v in dwell.items() if _number(v)}
        recent = signals.get("recentEvents")
        if isinstance(recent, list):
            b.recent = [e for e in recent if isinstance(e, dict)]
        b.extra = {k: v for k, v in signals.items() if k not in _KNOWN_SIGNALS}
    if live_raw:
        live = _object(orjson.loads(live_raw))
        b.last_seen = _float_or_none(live.get("lastAt"))
        sid = live.get("sid")
        b.session_id = sid if isinstance(sid, str) else None
        b.ordered_at = _float_or_none(live.get("orderedAt"))
        b.half_life = _float_or_none(live.get("hl"))
        if b.last_seen is not None:
            b.extra.pop("lastSeen", None)  # derived from lastAt: re-encoded in a stable order
        view = live.get("view")
        if isinstance(view, list) and len(view) == 5 and all(map(_number, view[2:])):
            b.view = View(view[0], view[1], *map(float, view[2:]))
        cart = live.get("cart")
        if isinstance(cart, list) and len(cart) == 3 and _number(cart[1]) and _number(cart[2]):
            products = [p for p in cart[0] if isinstance(p, str)]
            b.cart = Cart(products, float(cart[1]), float(cart[2]))
        eng = live.get("eng")
        if isinstance(eng, dict):
            b.engagement = {
                k: (float(v[0]), float(v[1]))
                for k, v in eng.items()
                if isinstance(v, list) and len(v) == 2 and _number(v[0]) and _number(v[1])
            }
    return b


def _audience_times(value: Any) -> dict[str, tuple[bool, float]]:
    return {
        key: (bool(pair[0]), float(pair[1]))
        for key, pair in _object(value).items()
        if isinstance(pair, list) and len(pair) == 2 and _number(pair[1])
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: Any) -> int:
    return int(value) if _number(value) else 0


def _float_or_none(value: Any) -> float | None:
    return float(value) if _number(value) else None


# ---------------------------------------------------------------- encoding


def counters(b: Behaviour) -> dict[str, Any]:
    """`visits`, `sessions` and `lastSeen`, as far as they are known."""
    out: dict[str, Any] = {}
    if b.visits or b.last_seen is not None:
        out["visits"] = b.visits
    if b.sessions or b.last_seen is not None:
        out["sessions"] = b.sessions
    if b.last_seen is not None:
        out["lastSeen"] = iso(b.last_seen)
    return out


def encode_view(state: ProfileState) -> dict[str, bytes]:
    """The fields every id of a profile carries (the canonical one and its mirrors)."""
    b = state.behaviour
    signals: dict[str, Any] = dict(b.extra)
    signals.update(counters(b))
    if b.dwell:
        signals["dwell"] = {k: round(v, 1) for k, v in b.dwell.items()}
    if b.recent:
        signals["recentEvents"] = b.recent
    live: dict[str, Any] = {}
    if b.last_seen is not None:
        live["lastAt"] = b.last_seen
    if b.session_id is not None:
        live["sid"] = b.session_id
    if b.ordered_at is not None:
        live["orderedAt"] = b.ordered_at
    if b.view is not None:
        v = b.view
        live["view"] = [v.product, v.category, v.at, v.cap, v.timeout]
    if b.cart is not None:
        live["cart"] = [b.cart.products, b.cart.at, b.cart.due]
    if b.engagement:
        live["eng"] = {k: [round(s, 6), at] for k, (s, at) in b.engagement.items()}
        live["hl"] = b.half_life
    fields = {
        "traits": orjson.dumps(state.traits),
        "audiences": orjson.dumps(sorted(state.audiences)),
        "signals": orjson.dumps(signals),
        "live": orjson.dumps(live),
    }
    if state.consent is not None:
        fields["consent"] = b"1" if state.consent else b"0"
    if state.audience_times:
        times = {k: [int(member), at] for k, (member, at) in state.audience_times.items()}
        fields[AUDIENCE_TIMES_FIELD] = orjson.dumps(times)
    return fields


# ---------------------------------------------------------------- merging


def merge_into(target: ProfileState, other: ProfileState, rules: SignalRules) -> None:
    """Fold `other` into `target`, keeping everything; `target` wins where values conflict."""
    target.traits = {**other.traits, **target.traits}
    target.audiences |= other.audiences
    for key, (member, at) in other.audience_times.items():
        mine = target.audience_times.get(key)
        if mine is None or at > mine[1]:  # the newer change wins; on a tie, the target's
            target.change_audience(key, member, at)
    for key, (member, _) in target.audience_times.items():  # a dated exit outlasts the union
        if not member:
            target.audiences.discard(key)
    if target.consent is None:
        target.consent = other.consent
    _merge_behaviour(target.behaviour, other.behaviour, rules)


def _merge_behaviour(t: Behaviour, o: Behaviour, rules: SignalRules) -> None:
    t.visits += o.visits
    t.sessions += o.sessions
    if o.last_seen is not None and (t.last_seen is None or o.last_seen > t.last_seen):
        t.last_seen, t.session_id = o.last_seen, o.session_id
    for product, seconds in o.dwell.items():
        t.dwell[product] = t.dwell.get(product, 0.0) + seconds
    t.half_life = t.half_life or o.half_life
    half_life = t.half_life or rules.half_life
    for category, (score, at) in o.engagement.items():
        mine = t.engagement.get(category)
        if mine is None:
            t.engagement[category] = (score, at)
        else:
            when = max(at, mine[1])
            t.engagement[category] = (
                mine[0] * decay(when - mine[1], half_life) + score * decay(when - at, half_life),
                when,
            )
    if o.view is not None and (t.view is None or o.view.at > t.view.at):
        t.view = o.view
    t.cart = _merged_cart(t.cart, o.cart)
    if o.ordered_at is not None and (t.ordered_at is None or o.ordered_at > t.ordered_at):
        t.ordered_at = o.ordered_at
    if t.cart is not None and t.ordered_at is not None and t.ordered_at >= t.cart.at:
        t.cart = None
    if o.recent:
        merged = sorted([*t.recent, *o.recent], key=lambda e: str(e.get("at", "")))
        t.recent = merged[-rules.recent_events :] if rules.recent_events else []
    t.extra = {**o.extra, **t.extra}


def _merged_cart(mine: Cart | None, theirs: Cart | None) -> Cart | None:
    if mine is None or theirs is None:
        return mine or theirs
    products = list(dict.fromkeys([*mine.products, *theirs.products]))
    return Cart(products, max(mine.at, theirs.at), max(mine.due, theirs.due))
