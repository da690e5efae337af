"""This replica's ranking model, kept at the published version.

`refresh` reads the version pointer; when it moved, it loads and validates that version's
artifact and compiles it. A missing or broken artifact means *no model*: the rules decide
alone (the rollback), logged once per version (`learning.model.invalid`) and visible as
`microbridge_model_loaded 0` and in `/readyz` (`model`: the version served, the version
published, the problem). `run` reloads on every announcement and at least every
`poll_seconds`, like the kill switches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from redis.asyncio import Redis

from assembly.learning import metrics
from assembly.learning.artifact import decode
from assembly.learning.compiled import CompiledModel
from assembly.learning.exceptions import ModelInvalid
from assembly.learning.store import ModelStore
from core.announcements import follow
from core.ops import ReadinessCheck

log = structlog.get_logger()


class ModelHolder:
    def __init__(self, store: ModelStore, poll_seconds: float) -> None:
        self.store = store
        self.model: CompiledModel | None = None
        self.published: int | None = None  # the pointer, as last read
        self.problem: str | None = None
        self._poll = poll_seconds
        self._lock = asyncio.Lock()

    def status(self) -> dict[str, Any]:
        """For `/readyz`: the version served, the one published, and why they differ."""
        return {
            "version": self.model.version if self.model else None,
            "published": self.published,
            "problem": self.problem,
        }

    async def refresh(self) -> None:
        async with self._lock:
            version = await self.store.current()
            if version == self.published:
                return
            self.published = version
            if version is None:
                self._install(None, None)
                return
            raw = await self.store.artifact(version)
            try:
                if raw is None:
                    raise ModelInvalid(f"version {version} is published but its artifact is gone")
                doc = decode(raw)
                if doc.version != version:
                    raise ModelInvalid(f"artifact says version {doc.version}, pointer {version}")
            except ModelInvalid as exc:
                metrics.MODEL_LOAD_FAILURES.inc()
                log.error("learning.model.invalid", version=version, detail=exc.detail)
                self._install(None, f"version {version}: {exc.detail}; rules decide")
                return
            self._install(CompiledModel(doc), None)
            log.info("learning.model.loaded", version=version, slots=sorted(doc.slots))

    def _install(self, model: CompiledModel | None, problem: str | None) -> None:
        self.model, self.problem = model, problem
        metrics.MODEL_LOADED.set(1 if model is not None else 0)
        metrics.MODEL_VERSION.set(model.version if model is not None else 0)

    async def run(self, redis: Redis) -> None:
        """Reload on every announcement, and at least every `poll_seconds`; never ends."""
        await follow(
            redis,
            self.store.keys.model_channel,
            self.refresh,
            poll_seconds=self._poll,
            failed_event="learning.model.watch_failed",
        )


def with_model_status(check: ReadinessCheck, holder: ModelHolder) -> ReadinessCheck:
    """`check` (the app's readiness) with this replica's model under `model`. A missing or
    refused model does not make the replica unready: the rules decide."""

    async def ready() -> tuple[bool, dict[str, Any]]:
        ok, detail = await check()
        return ok, {**detail, "model": holder.status()}

    return ready
