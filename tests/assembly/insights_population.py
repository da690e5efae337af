"""A planted population for trigger discovery: known triggers, written through the real code.

Every visitor has 1-5 visits (two hours apart, a page every 12 minutes). 30 % add a product to
the cart in their first visit and never order it then (cart abandoners); converters order at
the end of their last visit. The conversion probability is 0.08, times 3 for a cart abandoner
and times 2 for a visitor with 3 or more visits: the planted triggers are
`{"signals.cartAbandoned": true}` and `{"signals.visits": {"$gte": 3}}`. A `plan` trait, a
`newsletter` audience and `Video Played` events are noise.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from core.redis import Keys
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.pipeline import TRACKING, enqueue

GOAL = "Order Completed"
BASE, CART_FACTOR, VISITS_FACTOR = 0.08, 3.0, 2.0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _event(user: str, at: float, name: str | None = None, **props: Any) -> dict[str, Any]:
    kind = "track" if name else "page"
    event: dict[str, Any] = {"type": kind, "userId": user, "timestamp": _iso(at)}
    if name:
        event["event"] = name
    if props:
        event["properties"] = props
    return event


def visitor_events(
    user: str, rng: random.Random, start: float
) -> tuple[list[dict[str, Any]], bool]:
    visits = rng.choice([1, 1, 2, 2, 3, 4, 5])
    abandoner = rng.random() < 0.3
    p = BASE * (CART_FACTOR if abandoner else 1) * (VISITS_FACTOR if visits >= 3 else 1)
    converts = rng.random() < p
    events = []
    for v in range(visits):
        t0 = start + v * 7200
        events += [_event(user, t0 + m * 720) for m in range(4)]
        if rng.random() < 0.3:
            events.append(_event(user, t0 + 100, "Video Played"))
    if abandoner:
        events.append(_event(user, start + 1, "Product Added", product_id="sku-1"))
    last = start + (visits - 1) * 7200
    if converts:
        if not abandoner:
            events.append(_event(user, last + 2280, "Product Added", product_id="sku-2"))
        events.append(_event(user, last + 2400, GOAL, revenue=10))
    return sorted(events, key=lambda e: e["timestamp"]), converts


async def plant(
    redis: Redis, keys: Keys, *, visitors: int, seed: int, now: float, profiles: bool = True
) -> int:
    """Write the population (events to the stream, traits and audiences to profiles); returns
    how many converted."""
    rng = random.Random(seed)
    store = RedisProfileStore(redis, keys)
    converted, batch = 0, []
    for i in range(visitors):
        user = f"p{i}"
        events, converts = visitor_events(user, rng, now - 3 * 86400 + rng.random() * 3600)
        converted += converts
        batch += events
        if profiles:
            await store.write(
                user_id=user,
                traits={"plan": rng.choice(["free", "pro"])},
                audiences={"newsletter"} if rng.random() < 0.5 else set(),
            )
        if len(batch) >= 2000:
            await enqueue(redis, keys, batch, TRACKING)
            batch = []
    if batch:
        await enqueue(redis, keys, batch, TRACKING)
    return converted
