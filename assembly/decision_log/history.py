"""The last few libraries this replica served, so a decision replays on the library it used.

Kept in memory only, `DECISIONS_LOG_KEEP_LIBRARIES` of them (each holds the compiled
snapshot, so memory grows with the space). Every webhook patch installs a new version, so on
a busy editing day the kept ones may cover only minutes: a decision whose version is gone
replays on the live library, and replay says so.
"""

from __future__ import annotations

from collections import deque

from assembly.decision_log.record import LibraryTag
from integration.library import Library
from integration.service import LibraryHolder


class LibraryHistory:
    def __init__(self, keep: int) -> None:
        self._kept: deque[tuple[Library, LibraryTag]] = deque(maxlen=keep)

    def add(self, library: Library, tag: LibraryTag) -> None:
        self._kept.append((library, tag))

    def tag(self, library: Library) -> LibraryTag:
        """The tag of a library this replica installed (version only, if no longer kept)."""
        for kept, tag in reversed(self._kept):
            if kept is library:
                return tag
        return LibraryTag(library.version, None, None)

    def find(self, tag: LibraryTag) -> Library | None:
        """The kept library of that epoch and version (any epoch when the record has none)."""
        for library, kept in reversed(self._kept):
            if kept.version == tag.version and (tag.epoch is None or kept.epoch == tag.epoch):
                return library
        return None

    @property
    def versions(self) -> list[int]:
        return [tag.version for _, tag in self._kept]

    def follow(self, holder: LibraryHolder) -> None:
        """Keep every library `holder` installs from now on (and the one it serves now)."""
        if holder.library is not None:
            self.add(holder.library, _tag_of(holder, holder.library))
        previous = holder.on_install

        def installed(library: Library) -> None:
            self.add(library, _tag_of(holder, library))
            if previous is not None:
                previous(library)

        holder.on_install = installed


def _tag_of(holder: LibraryHolder, library: Library) -> LibraryTag:
    generation = holder.generation
    return LibraryTag(library.version, holder.epoch, generation.id if generation else None)
