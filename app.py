"""Composition root: settings, clients and routers, wired once in the lifespan.

`app` is module-level for `uvicorn app:app`; nothing connects until the lifespan starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from assembly.admin_router import router as decisions_admin_router
from assembly.config import DecisionSettings
from assembly.decision_log.router import router as decision_log_router
from assembly.decision_log.service import DecisionLog
from assembly.explain.router import router as explain_router
from assembly.insights.router import router as insights_router
from assembly.last_good import DEMO_SOURCE, SnapshotWriter, startup_fallback
from assembly.operator.router import router as operator_router
from assembly.preview.config import PreviewSettings
from assembly.preview.router import router as preview_router
from assembly.preview.runtime import build_preview
from assembly.router import fast_route as assemble_fast_route
from assembly.router import router as assemble_router
from assembly.schemas import AssembleRequest
from assembly.service import AssemblyService
from assembly.store import read_counts, record_conversion, tests_index
from assembly.wiring import DecisionRuntime
from assembly.writer import EXPOSURE_SOURCE
from core.apidocs import router as apidocs_router
from core.cors import CORSMiddleware
from core.errors import install_error_handlers
from core.limits import BodyLimitMiddleware, BodyTimeoutMiddleware
from core.logging import configure_from_environment, configure_logging
from core.openapi import error_contract
from core.ops import router as ops_router
from core.redis import Keys, connect
from core.responses import OrjsonResponse
from core.settings import ServiceSettings, StoreSettings, deferred
from core.timing import LatencyMiddleware
from integration.client import ContentfulSource
from integration.config import ContentfulSettings
from integration.demo import DemoSource
from integration.exceptions import ContentfulError
from integration.library import compile_library
from integration.preview_source import preview_source
from integration.schemas import ContentSource
from integration.service import LibraryHolder, sync_forever
from integration.store import ContentStore, SyncLock
from integration.sync import SyncService, sync_once_locked
from segment_sync.config import SegmentSettings
from segment_sync.consumer import Hook
from segment_sync.pipeline import enqueue
from segment_sync.router import router as tracking_router
from segment_sync.service import Refreshing, only_events, start_events
from segment_sync.store import RedisProfileStore
from segment_sync.webhook_config import SegmentWebhookSettings
from webhooks.contentful.config import ContentfulWebhookSettings
from webhooks.contentful.router import router as webhooks_router
from webhooks.contentful.service import build_contentful_webhooks
from webhooks.segment.lifespan import start_segment
from webhooks.segment.router import router as segment_webhook_router

log = structlog.get_logger()

# Raw (possibly gzipped) body limits of the tracking API; the service also caps the
# decompressed size at 500 KB (segment_sync/service.py: decompress).
TRACKING_LIMITS = {
    f"/v1/{name}": 500 * 1024
    for name in ("batch", "track", "identify", "page", "screen", "group", "alias")
}


@dataclass(frozen=True, slots=True)
class AppSettings:
    service: ServiceSettings
    store: StoreSettings
    contentful: ContentfulSettings
    contentful_webhooks: ContentfulWebhookSettings = field(
        default_factory=ContentfulWebhookSettings
    )
    decisions: DecisionSettings = field(default_factory=DecisionSettings)
    segment_webhook: SegmentWebhookSettings = field(default_factory=SegmentWebhookSettings)
    segment: SegmentSettings = field(default_factory=SegmentSettings)
    preview: PreviewSettings = field(default_factory=PreviewSettings)


class ConfigurationError(SystemExit):
    """Start-up refused: one line that names the variable to fix."""


def load_settings() -> AppSettings:
    try:
        return AppSettings(
            ServiceSettings(),
            StoreSettings(),
            ContentfulSettings(),
            ContentfulWebhookSettings(),
            decisions=DecisionSettings(),
            segment_webhook=SegmentWebhookSettings(),
            segment=SegmentSettings(),
            preview=PreviewSettings(),
        )
    except ValidationError as exc:
        raise ConfigurationError(f"microbridge: configuration error: {_describe(exc)}") from None


def _settings_or_exit() -> AppSettings:
    """Under a plain `uvicorn app:app`, a bad setting ends the process with its one line.

    (An exception from the lifespan would bury that line in two tracebacks.)
    """
    try:
        return load_settings()
    except ConfigurationError as exc:
        print(exc.code, file=sys.stderr, flush=True)  # noqa: T201
        os._exit(2)


def _describe(exc: ValidationError) -> str:
    prefix = {
        "ServiceSettings": "BRIDGE_",
        "StoreSettings": "REDIS_",
        "ContentfulSettings": "CONTENTFUL_",
        "ContentfulWebhookSettings": "CONTENTFUL_WEBHOOK_",
        "DecisionSettings": "DECISIONS_",
        "SegmentWebhookSettings": "SEGMENT_",
        "SegmentSettings": "SEGMENT_",
        "PreviewSettings": "BRIDGE_PREVIEW_",
    }.get(exc.title, "")
    err = exc.errors()[0]
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["loc"]:
        return f"{prefix}{str(err['loc'][0]).upper()}: {message}"
    return message


@dataclass
class Runtime:
    settings: AppSettings
    redis: Redis
    embedded: bool
    keys: Keys
    content: ContentStore
    holder: LibraryHolder
    sync: SyncService
    lock: SyncLock
    snapshot: SnapshotWriter
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    first_sync: asyncio.Event = field(default_factory=asyncio.Event)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready only with a complete library; says which generation, how old, and the sync."""
        library = self.holder.library
        store_ok = await _ping(self.redis)
        detail: dict[str, Any] = {
            "library": self._library_detail(),
            "store": {
                "reachable": store_ok,
                "embedded": self.embedded,
                "lostSince": self.holder.store_lost_since,
            },
            "source": self.sync.source_name,
            **(await self._sync_detail() if store_ok else {"sync": None, "syncAgeSeconds": None}),
        }
        return library is not None and store_ok, detail

    def _library_detail(self) -> dict[str, Any] | None:
        library, generation = self.holder.library, self.holder.generation
        if library is None:
            return None
        built = generation.built_at if generation else library.built_at
        return {
            **library.summary(),
            "generation": generation.id if generation else None,
            "builtAt": built,
            "ageSeconds": round(time.time() - built, 1),
            "epoch": self.holder.epoch,
        }

    async def _sync_detail(self) -> dict[str, Any]:
        """The sync as the store records it (whichever replica runs it)."""
        try:
            state = await self.content.sync_state()
            owner = await self.redis.get(self.keys.sync_lock)
            synced_at = await self.content.synced_at()
        except (RedisError, OSError):
            return {"sync": None, "syncAgeSeconds": None}
        error = state.get("lastError")
        return {
            "sync": {
                "running": state.get("running") or None if owner else None,
                "lastSuccessAt": _float(state.get("lastSuccessAt")),
                "lastErrorAt": _float(state.get("lastErrorAt")),
                "lastError": orjson.loads(error) if error else None,
                "lastMode": state.get("lastMode") or None,
            },
            "syncAgeSeconds": round(time.time() - synced_at, 1) if synced_at else None,
        }


def _float(raw: str | None) -> float | None:
    return float(raw) if raw else None


async def _ping(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


def content_source(settings: ContentfulSettings) -> ContentSource:
    if settings.configured:
        return ContentfulSource(settings)
    log.info("contentful.demo", detail="CONTENTFUL_SPACE_ID unset: serving the bundled demo space")
    return DemoSource()


def source_identity(settings: ContentfulSettings) -> str:
    """What a last-good snapshot must name to stand in for this replica's content."""
    if not settings.configured:
        return DEMO_SOURCE
    return f"contentful:{settings.space_id}/{settings.environment}"


def build_runtime(settings: AppSettings) -> Runtime:
    redis, embedded = connect(settings.store)
    keys = Keys(settings.store.key_prefix)
    content = ContentStore(redis, keys)
    depth = settings.service.link_depth
    snapshot = SnapshotWriter(settings.service.snapshot_path, source_identity(settings.contentful))
    validate = functools.partial(compile_library, link_depth=depth)
    lease = settings.contentful.sync_lease_seconds
    return Runtime(
        settings=settings,
        redis=redis,
        embedded=embedded,
        keys=keys,
        content=content,
        holder=LibraryHolder(content, link_depth=depth, on_install=snapshot.notify),
        sync=SyncService(content_source(settings.contentful), content, validate=validate),
        lock=SyncLock(redis, keys.sync_lock, ttl_seconds=lease),
        snapshot=snapshot,
    )


def full_resync_on_store_loss(runtime: Runtime) -> None:
    """When the store lost its data: rebuild a generation now (one replica wins the lease)."""

    def trigger() -> None:
        task = asyncio.create_task(_full_resync(runtime), name="store-lost-resync")
        runtime.tasks.append(task)

    runtime.holder.on_store_lost = trigger


async def _full_resync(runtime: Runtime) -> None:
    try:
        result = await sync_once_locked(runtime.sync, runtime.lock, full=True)
    except (ContentfulError, RedisError, OSError) as exc:
        log.error("contentful.sync.failed", error=type(exc).__name__, detail=str(exc))
        return
    if result is not None:
        await runtime.holder.refresh()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: AppSettings = getattr(app.state, "settings", None) or _settings_or_exit()
    configure_logging(settings.service.log_level, json=settings.service.log_json)
    tune_gc()
    runtime = build_runtime(settings)
    app.state.runtime = runtime
    admin = settings.service.admin_token
    app.state.admin_token = admin.get_secret_value() if admin else None
    app.state.readiness = runtime.readiness
    app.state.decisions = decisions = DecisionRuntime.build(
        runtime.redis,
        runtime.keys,
        settings.decisions,
        runtime.holder,
        RedisProfileStore(runtime.redis, runtime.keys),
        sink=functools.partial(
            enqueue,
            runtime.redis,
            runtime.keys,
            source=EXPOSURE_SOURCE,
            max_len=settings.segment.stream_max_len,
        ),
    )
    fallback = startup_fallback(runtime.snapshot.path, source_identity(settings.contentful))
    app.state.decision_log = decision_log = DecisionLog.build(
        runtime.redis, runtime.keys, settings.decisions, runtime.holder
    )
    app.state.assembly = AssemblyService(
        runtime.holder,
        decisions.reader,
        fallback,
        engine=decisions.engine,
        decision_log=decision_log,
    )
    app.state.preview = build_preview(
        settings.preview,
        preview_source(settings.contentful),
        runtime.holder,
        decisions,
        link_depth=settings.service.link_depth,
    )
    interval = settings.contentful.sync_interval_seconds
    lock = runtime.lock
    full_resync_on_store_loss(runtime)
    runtime.tasks = [
        asyncio.create_task(
            sync_forever(runtime.sync, lock, interval, attempted=runtime.first_sync), name="sync"
        ),
        asyncio.create_task(runtime.snapshot.run(), name="library-snapshot"),
        asyncio.create_task(
            runtime.holder.watch(
                runtime.redis, runtime.keys, settings.service.library_poll_seconds
            ),
            name="library-watch",
        ),
    ]
    app.state.contentful_webhooks = webhooks = build_contentful_webhooks(
        settings.contentful_webhooks,
        settings.contentful,
        content=runtime.content,
        keys=runtime.keys,
        holder=runtime.holder,
        sync=functools.partial(sync_once_locked, runtime.sync, lock),
    )
    if webhooks is not None:
        runtime.tasks.append(asyncio.create_task(webhooks.resync.run(), name="contentful-resync"))
    runtime.tasks.extend(await decisions.start())
    runtime.tasks.extend(decision_log.start())
    app.state.events = events = await start_events(
        runtime.redis,
        runtime.keys,
        settings.segment,
        settings.store,
        embedded=runtime.embedded,
        hooks=[conversion_hook(runtime.redis, runtime.keys, settings)],
    )
    if events.task is not None:
        runtime.tasks.append(events.task)
    segment = start_segment(
        app,
        runtime.redis,
        runtime.keys,
        settings.segment_webhook,
        events.profiles,
        stream_max_len=settings.segment.stream_max_len,
    )
    log.info("service.started", source=runtime.sync.source_name, embedded_store=runtime.embedded)
    try:
        yield
    finally:
        await stop_tasks(runtime.tasks)
        await events.aclose()
        await segment.aclose()
        await runtime.redis.aclose()
        log.info("service.stopped")


def conversion_hook(redis: Redis, keys: Keys, settings: AppSettings) -> Hook:
    """Experiment conversions for the event consumers, called only for goal events (the goals
    of the tests that have data, and the rollout guardrail's), reloaded every second."""

    async def goals() -> set[str]:
        names = {settings.decisions.guardrail_goal_event}
        for test in await redis.smembers(tests_index(keys)):
            name = test.decode() if isinstance(test, bytes) else test
            meta = (await read_counts(redis, keys, name)).meta
            if meta is not None and meta.goal:
                names.add(meta.goal)
        return names

    return only_events(functools.partial(record_conversion, redis, keys), Refreshing(goals))


def tune_gc() -> None:
    """Fewer cyclic collections on the hot path (profiled: ~15% of assemble CPU).

    What is alive at start-up (modules, settings) is frozen out of collections; the young
    generation threshold goes from 700 to 50,000 allocations. Request objects are freed by
    reference counting; the compiled library holds no cycles that matter.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def stop_tasks(tasks: list[asyncio.Task[Any]], *, attempts: int = 20) -> None:
    """Cancel background tasks until they end.

    A cancel that lands inside a Redis read with a socket timeout can be turned into a
    timeout and retried by redis-py, so one cancel is not always enough.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(attempts):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.25)
    log.error("service.tasks_stuck", tasks=[t.get_name() for t in pending])


def create_app(settings: AppSettings | None = None) -> FastAPI:
    app = FastAPI(
        title="Microbridge",
        version="0.1.0",
        summary="Personalized micro-content from Contentful, per visitor and page view",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # core.apidocs serves /docs without CDN assets
        redoc_url=None,
    )
    app.state.settings = settings
    if settings is None:  # `uvicorn app:app`: JSON logs before uvicorn's own first line
        configure_from_environment()
    service = deferred(settings.service if settings else None)
    install_error_handlers(app)
    app.include_router(ops_router)
    app.include_router(assemble_router)
    app.include_router(webhooks_router)
    app.include_router(segment_webhook_router)
    app.include_router(decisions_admin_router)
    app.include_router(operator_router)
    app.include_router(decision_log_router)
    app.include_router(explain_router)
    app.include_router(insights_router)
    app.include_router(preview_router)
    app.include_router(tracking_router)
    app.include_router(apidocs_router)
    app.router.routes.insert(0, assemble_fast_route)
    app.add_middleware(
        BodyLimitMiddleware, settings=service, limits={"/webhooks/": 1024 * 1024, **TRACKING_LIMITS}
    )
    app.add_middleware(BodyTimeoutMiddleware, settings=service)
    app.add_middleware(CORSMiddleware, settings=service, paths=("/v1/assemble", *TRACKING_LIMITS))
    app.add_middleware(LatencyMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        request = AssembleRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(request.pop("$defs", {}))
        components["AssembleRequest"] = request
        app.openapi_schema = error_contract(schema)
    return app.openapi_schema


app = create_app()
