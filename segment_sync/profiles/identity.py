"""Identity: which profile an event belongs to, and linking ids into one merged profile.

A profile lives under one canonical id (`u:<userId>` once the visitor is known, else
`a:<anonymousId>`). Other ids of the same visitor are aliases: their hash holds a pointer
(`canonical`) and a mirror of the merged profile, so `/v1/assemble` with any one id reads the
whole profile in one round trip. Links are made by any message that carries both a `userId` and
an `anonymousId` (identify, track, page, ...) and by `alias` (`previousId` → `userId`).

- An id that is its own profile joins by merging: everything is kept (state.merge_into).
- An alias merges the two visitors' whole profiles (Segment: the same person).
- An anonymousId already linked to another user is moved, not merged (a shared device: two
  people must not become one).
- At most `max_links` ids mirror a profile; the oldest beyond that keep their pointer (their
  events still count) but no mirror (a read by that id alone finds nothing).

`World` works on states loaded by the batch writer (apply.py) and records what to write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.redis import anonymous_visitor, user_visitor
from segment_sync.config import SignalRules
from segment_sync.profiles.state import ProfileState, merge_into

_MAX_HOPS = 8


def message_ids(message: Mapping[str, Any]) -> list[str]:
    """The visitor ids a message names (typed), in the order they matter."""
    ids = []
    if message.get("userId"):
        ids.append(user_visitor(message["userId"]))
    if message.get("anonymousId"):
        ids.append(anonymous_visitor(message["anonymousId"]))
    if message.get("type") == "alias" and message.get("previousId"):
        ids += [user_visitor(message["previousId"]), anonymous_visitor(message["previousId"])]
    return ids


@dataclass
class World:
    states: dict[str, ProfileState]
    rules: SignalRules
    max_links: int
    dirty: set[str] = field(default_factory=set)
    detached: set[str] = field(default_factory=set)
    seen_moves: list[tuple[str, str]] = field(default_factory=list)

    def state(self, vid: str) -> ProfileState:
        found = self.states.get(vid)
        if found is None:
            found = self.states[vid] = ProfileState()
        return found

    def resolve(self, vid: str) -> str:
        for _ in range(_MAX_HOPS):
            found = self.states.get(vid)
            if found is None or found.canonical is None:
                return vid
            vid = found.canonical
        return vid

    def target(self, message: Mapping[str, Any]) -> str:
        """The canonical id the message applies to, after the links it makes."""
        ids = message_ids(message)
        target = self.resolve(ids[0])
        if message.get("type") == "alias":
            for other in ids[1:]:
                self.link(other, target, merge_clusters=True)
        elif len(ids) > 1:
            self.link(ids[1], target, merge_clusters=False)
        return target

    def link(self, vid: str, target: str, *, merge_clusters: bool) -> None:
        current = self.resolve(vid)
        if current == target:
            return
        if current == vid:
            self._absorb(vid, target)
        elif merge_clusters:
            self._absorb(current, target)
        else:
            other = self.state(current)
            if vid in other.links:
                other.links.remove(vid)
                self.dirty.add(current)
            self._attach(vid, target)

    def _absorb(self, source: str, target: str) -> None:
        """`source`, its own profile, joins `target` with everything it has and links."""
        absorbed = self.state(source)
        if not absorbed.empty:
            merge_into(self.state(target), absorbed, self.rules)
        self.seen_moves.append((source, target))
        for link in absorbed.links:
            self._attach(link, target)
        self._attach(source, target)

    def _attach(self, vid: str, target: str) -> None:
        self.states[vid] = ProfileState(canonical=target)
        self.detached.discard(vid)
        links = self.state(target).links
        if vid not in links:
            links.append(vid)
        while len(links) > self.max_links:
            self.detached.add(links.pop(0))
        self.dirty.add(target)

    def canonicals(self) -> list[str]:
        """The dirty ids that are still canonical (merged-away ones are written as mirrors)."""
        return [vid for vid in sorted(self.dirty) if self.state(vid).canonical is None]
