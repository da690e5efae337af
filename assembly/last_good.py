"""The last good library on disk, and which fallback a replica answers from before it has one.

After each library it installs, the replica writes the fallback form of it (baselines of every
slot, per template; `assembly/fallback.py`) to `BRIDGE_SNAPSHOT_PATH` atomically: a temporary
file in the same folder, fsync, rename. The file names the content source it came from, so a
replica only ever falls back to a snapshot of its own space and environment.

At start-up, before a library is live, the fallback is that snapshot when it matches; else the
bundled demo fallback when the source is the demo space; else nothing, and assemble says that no
content is known for the template (503) instead of inventing any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import orjson
import structlog

from assembly.fallback import FallbackLibrary, export_fallback
from integration.library import Library
from integration.metrics import SNAPSHOT_WRITES

log = structlog.get_logger()

DEMO_SOURCE = "demo"


def write_snapshot(path: Path, source: str, library: Library) -> None:
    """Write `library`'s fallback form to `path` atomically (a reader sees old or new, whole)."""
    document = export_fallback(library)
    document["source"] = source
    document["writtenAt"] = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as out:
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def snapshot_source(path: Path) -> str | None:
    """The content source a snapshot file was written from; None when absent or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else None


def startup_fallback(path: Path, source: str) -> FallbackLibrary:
    """The fallback to answer from until a library is live (see the module docstring)."""
    found = snapshot_source(path)
    if found == source:
        log.info("library.snapshot_loaded", path=str(path), source=source)
        return FallbackLibrary.load(path)
    if found is not None:
        log.warning("library.snapshot_ignored", path=str(path), found=found, expected=source)
    if source == DEMO_SOURCE:
        return FallbackLibrary.load()
    log.warning("library.no_fallback", detail="no last-good snapshot for this space yet")
    return FallbackLibrary()


class SnapshotWriter:
    """Writes the newest installed library to disk, off the event loop, at most every
    `min_interval` seconds (a burst of webhooks makes one write, not one each)."""

    def __init__(self, path: Path, source: str, *, min_interval: float = 5.0) -> None:
        self.path = path
        self._source = source
        self._min_interval = min_interval
        self._latest: Library | None = None
        self._wake = asyncio.Event()

    def notify(self, library: Library) -> None:
        self._latest = library
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            library = self._latest
            if library is not None:
                await self.write(library)
            await asyncio.sleep(self._min_interval)

    async def write(self, library: Library) -> None:
        try:
            await asyncio.to_thread(write_snapshot, self.path, self._source, library)
        except OSError as exc:
            SNAPSHOT_WRITES.labels(outcome="error").inc()
            log.error("library.snapshot_failed", path=str(self.path), detail=str(exc))
            return
        SNAPSHOT_WRITES.labels(outcome="ok").inc()
        log.info("library.snapshot_written", path=str(self.path), version=library.version)
