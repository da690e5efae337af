"""Identity linking and merging (identity.World, pure): which profile an event lands on."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from segment_sync.config import SignalRules
from segment_sync.profiles.identity import World
from segment_sync.profiles.state import Behaviour, ProfileState
from segment_sync.profiles.store import RedisProfileStore
from tests.segment_sync.tracking_support import KEYS

RULES = SignalRules()


def world(**states: ProfileState) -> World:
    return World({k.replace("_", ":", 1): v for k, v in states.items()}, RULES, max_links=3)


def message(kind: str = "track", **ids: Any) -> dict[str, Any]:
    return {"type": kind, **ids}


def test_anonymous_events_land_on_the_anonymous_profile() -> None:
    w = world()
    assert w.target(message(anonymousId="a1")) == "a:a1"
    assert w.dirty == set()


def test_both_ids_merge_the_anonymous_profile_into_the_user() -> None:
    anon = ProfileState(
        traits={"plan": "free", "color": "red"},
        audiences={"video_lovers"},
        behaviour=Behaviour(visits=2, dwell={"sku-1": 10.0}, last_seen=100.0),
    )
    user = ProfileState(
        traits={"plan": "pro"},
        audiences={"runners"},
        behaviour=Behaviour(visits=1, dwell={"sku-1": 5.0, "sku-2": 1.0}, last_seen=50.0),
    )
    w = world(a_a1=anon, u_u1=user)
    assert w.target(message("identify", userId="u1", anonymousId="a1")) == "u:u1"
    merged = w.state("u:u1")
    assert merged.traits == {"plan": "pro", "color": "red"}, "the user wins, nothing is lost"
    assert merged.audiences == {"video_lovers", "runners"}
    assert merged.behaviour.visits == 3
    assert merged.behaviour.dwell == {"sku-1": 15.0, "sku-2": 1.0}
    assert merged.behaviour.last_seen == 100.0
    assert merged.links == ["a:a1"]
    assert w.state("a:a1").canonical == "u:u1"
    assert w.seen_moves == [("a:a1", "u:u1")]
    assert w.target(message(anonymousId="a1")) == "u:u1", "later anonymous events follow"


def test_an_anonymous_id_of_another_user_moves_without_merging_the_users() -> None:
    w = world(
        a_shared=ProfileState(canonical="u:alice"),
        u_alice=ProfileState(traits={"name": "Alice"}, links=["a:shared"]),
        u_bob=ProfileState(traits={"name": "Bob"}),
    )
    assert w.target(message(userId="bob", anonymousId="shared")) == "u:bob"
    assert w.state("u:bob").traits == {"name": "Bob"}
    assert w.state("u:alice").links == []
    assert w.state("u:bob").links == ["a:shared"]
    assert {"u:alice", "u:bob"} <= w.dirty


def test_alias_merges_the_previous_users_whole_profile() -> None:
    w = world(
        u_old=ProfileState(traits={"email": "x@example.com"}, links=["a:phone"]),
        a_phone=ProfileState(canonical="u:old"),
        u_new=ProfileState(traits={"plan": "pro"}),
    )
    assert w.target(message("alias", userId="new", previousId="old")) == "u:new"
    assert w.state("u:new").traits == {"email": "x@example.com", "plan": "pro"}
    assert w.resolve("a:phone") == "u:new"
    assert w.resolve("u:old") == "u:new"
    assert sorted(w.state("u:new").links) == ["a:old", "a:phone", "u:old"]
    assert w.canonicals() == ["u:new"]


def test_only_the_newest_links_are_mirrored() -> None:
    w = world()
    for i in range(5):
        w.target(message(userId="u", anonymousId=f"a{i}"))
    assert w.state("u:u").links == ["a:a2", "a:a3", "a:a4"]
    assert w.detached == {"a:a0", "a:a1"}
    assert w.resolve("a:a0") == "u:u", "a detached id still resolves"


async def test_a_read_with_two_unlinked_ids_merges_them(redis: Redis) -> None:
    store = RedisProfileStore(redis, KEYS)
    await store.write(anonymous_id="a-x", signals={"dwell": {"sku-1": 20}, "visits": 2})
    await store.write(user_id="u-x", audiences={"runners"}, signals={"dwell": {"sku-1": 15}})
    merged = await store.read("u-x", "a-x")
    assert merged is not None
    assert merged.audiences == frozenset({"runners"})
    assert merged.signals["dwell"] == {"sku-1": 35.0}
    assert merged.signals["visits"] == 2
    assert await store.read("u-nobody", "a-nobody") is None
