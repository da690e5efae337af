"""What the engine knows about one visitor (`GET /admin/profiles/{id}`): the profile it reads on
a page view (traits, audiences with their age, signals, consent) and the decision state
(experiment assignments, frequency counts, session marks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from assembly.decisions.state import decode_assignments
from assembly.ports import Profile, ProfileReader
from core.redis import Keys
from core.resp import text


async def visitor_json(
    redis: Redis,
    keys: Keys,
    profiles: ProfileReader,
    visitor_id: str,
    *,
    anonymous: bool,
    now: float,
) -> dict[str, Any] | None:
    """The visitor's profile and decision state; None when nothing is known."""
    user_id, anonymous_id = (None, visitor_id) if anonymous else (visitor_id, None)
    profile = await profiles.read(user_id, anonymous_id)
    typed = f"{'a' if anonymous else 'u'}:{visitor_id}"
    row = _text(await redis.hgetall(keys.decisions(typed)))
    if profile is None and not row:
        return None
    return {
        "visitor": {"anonymousId" if anonymous else "userId": visitor_id},
        "profile": _profile(profile, now) if profile is not None else None,
        "decisions": decisions_json(row),
    }


def _profile(profile: Profile, now: float) -> dict[str, Any]:
    return {
        "traits": dict(profile.traits),
        "audiences": [_membership(key, profile, now) for key in sorted(profile.audiences)],
        "signals": dict(profile.signals),
        "consent": profile.consent,
    }


def _membership(key: str, profile: Profile, now: float) -> dict[str, Any]:
    confirmed = profile.audience_times.get(key)
    return {
        "key": key,
        "confirmedAt": confirmed,
        "ageSeconds": round(now - confirmed, 3) if confirmed is not None else None,
    }


def decisions_json(row: Mapping[str, str]) -> dict[str, Any]:
    """The decision-state hash (assembly/decisions/state.py) by meaning: arms, caps, sessions."""
    raw = {k.encode(): v.encode() for k, v in row.items()}
    assignments = [
        {
            "test": test,
            "arm": assignment.arm,
            "variant": assignment.variant,
            "goal": assignment.goal,
            "at": assignment.at or None,
            "converted": converted,
        }
        for test, (_, assignment, converted) in sorted(decode_assignments([raw]).items())
    ]
    caps = [
        {"variant": name[2:].rsplit(":", 1)[0], "period": name.rsplit(":", 1)[1], "count": _int(v)}
        for name, v in sorted(row.items())
        if name.startswith("n:")
    ]
    return {"assignments": assignments, "caps": caps, "sessions": _sessions(row)}


def _sessions(row: Mapping[str, str]) -> list[dict[str, Any]]:
    sessions: dict[str, dict[str, Any]] = {}
    for name, value in sorted(row.items()):
        if not name.startswith("s:"):
            continue
        tag, _, rest = name[2:].partition(":")
        session = sessions.setdefault(
            tag, {"session": tag, "lastWriteAt": None, "slots": {}, "caps": {}, "exposed": []}
        )
        kind, _, item = rest.partition(":")
        if not rest:
            session["lastWriteAt"] = _float(value)
        elif kind == "slot":
            session["slots"][item] = value
        elif kind == "n":
            session["caps"][item] = _int(value)
        elif kind == "x":
            session["exposed"].append(item)
    return sorted(sessions.values(), key=lambda s: s["lastWriteAt"] or 0.0, reverse=True)


def _text(row: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in row.items()}


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _float(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
