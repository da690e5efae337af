"""Composition root: settings, clients and routers, wired once in the lifespan.

`app` is module-level for `uvicorn app:app`; nothing connects until the lifespan starts.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import ValidationError
from redis.asyncio import Redis

from assembly.admin.router import router as decisions_admin_router
from assembly.config import DecisionSettings
from assembly.decision_log.router import router as decision_log_router
from assembly.explain.router import router as explain_router
from assembly.insights.router import router as insights_router
from assembly.last_good import DEMO_SOURCE, SnapshotWriter, startup_fallback
from assembly.learning.holder import with_model_status
from assembly.operator.router import router as operator_router
from assembly.preview.config import PreviewSettings
from assembly.preview.router import router as preview_router
from assembly.router import fast_route as assemble_fast_route
from assembly.router import router as assemble_router
from assembly.router import serve_assemble
from assembly.schemas import AssembleRequest
from assembly.store import read_counts, record_conversion
from assembly.wiring import AssemblyPorts, AssemblyServices, start_assembly
from assembly.writer import EXPOSURE_SOURCE
from core.admin import AdminAccess
from core.apidocs import router as apidocs_router
from core.errors import install_error_handlers
from core.guard import HttpGuard
from core.logging import configure_from_environment, configure_logging
from core.openapi import error_contract
from core.ops import Readiness
from core.ops import router as ops_router
from core.redis import Keys, connect, keys_for, writes_client
from core.responses import OrjsonResponse
from core.settings import ServiceSettings, StoreSettings, deferred
from core.tasks import BackgroundTasks
from integration.config import ContentfulSettings
from integration.preview_source import preview_source
from integration.wiring import IntegrationServices, build_integration, start_integration
from segment_sync.config import SegmentSettings
from segment_sync.profiles.store import RedisProfileStore
from segment_sync.stream.consumer import Hook
from segment_sync.stream.pipeline import enqueue, streams
from segment_sync.tracking.router import router as tracking_router
from segment_sync.tracking.service import Refreshing, only_events
from segment_sync.webhook_config import SegmentWebhookSettings
from segment_sync.wiring import SegmentSyncServices, start_segment_sync
from webhooks.contentful.config import ContentfulWebhookSettings
from webhooks.contentful.router import router as webhooks_router
from webhooks.segment.router import router as segment_webhook_router
from webhooks.wiring import WebhookServices, WebhookSettings, start_webhooks

log = structlog.get_logger()

T = TypeVar("T")

# Raw (possibly gzipped) body limits of the tracking API; the service also caps the
# decompressed size at 500 KB (segment_sync/tracking/service.py: decompress).
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


@dataclass(frozen=True, slots=True)
class AppServices:
    """What the lifespan started: one part per package, plus the admin token and readiness.

    Set on `app.state.services` by the lifespan alone; a route's dependency getter finds its
    package's part by type (`core.services.started`).
    """

    admin: AdminAccess
    readiness: Readiness
    integration: IntegrationServices
    segment_sync: SegmentSyncServices
    webhooks: WebhookServices
    assembly: AssemblyServices
    tasks: BackgroundTasks

    def part(self, kind: type[T]) -> T:
        parts: tuple[object, ...] = (
            self.assembly,  # first: the page-view path asks for it
            self.segment_sync,
            self.webhooks,
            self.integration,
            self.admin,
            self.readiness,
        )
        for value in parts:
            if isinstance(value, kind):
                return value
        raise LookupError(f"the app has no {kind.__name__}")


def source_identity(settings: ContentfulSettings) -> str:
    """What a last-good snapshot must name to stand in for this replica's content."""
    if not settings.configured:
        return DEMO_SOURCE
    return f"contentful:{settings.space_id}/{settings.environment}"


def build_runtime(settings: AppSettings) -> IntegrationServices:
    """Integration's parts, not started, for cli.py's one-off commands (close `.redis`)."""
    redis, embedded = connect(settings.store)
    keys = keys_for(settings.store)
    return build_integration(redis, keys, settings.contentful, settings.service, embedded=embedded)


async def start_services(settings: AppSettings, stack: AsyncExitStack) -> AppServices:
    """Start every package; each registers its closers and the shared `tasks` on `stack`.

    Closing the stack first ends every task together (one bound), then runs the closers in
    reverse: webhooks, segment_sync, then Redis."""
    redis, embedded = connect(settings.store)
    stack.push_async_callback(redis.aclose)
    writes = writes_client(settings.store, redis)
    if writes is not redis:
        stack.push_async_callback(writes.aclose)
    tasks = BackgroundTasks()
    keys = keys_for(settings.store)
    identity = source_identity(settings.contentful)
    snapshot = SnapshotWriter(settings.service.snapshot_path, identity)
    fallback = startup_fallback(snapshot.path, identity)
    integration = await start_integration(
        redis,
        keys,
        settings.contentful,
        settings.service,
        stack,
        tasks,
        embedded=embedded,
        on_install=snapshot.notify,
    )
    segment = await start_segment_sync(
        redis,
        keys,
        settings.segment,
        settings.store,
        stack,
        tasks,
        embedded=embedded,
        hooks=[conversion_hook(redis, keys, settings)],
    )
    webhooks = start_webhooks(
        WebhookSettings(
            settings.contentful_webhooks,
            settings.segment_webhook,
            settings.segment.stream_max_len,
            settings.segment.ingest(),
        ),
        settings.contentful,
        integration,
        segment.profiles,
        stack,
        tasks,
    )
    ports = AssemblyPorts(
        event_streams=streams(keys, settings.segment.stream_shards),
        holder=integration.holder,
        profiles=RedisProfileStore(redis, keys),
        sink=functools.partial(
            enqueue,
            redis,
            keys,
            source=EXPOSURE_SOURCE,
            max_len=settings.segment.stream_max_len,
            ingest=settings.segment.ingest(),
        ),
        fallback=fallback,
        snapshot=snapshot,
        writes=writes,
        drafts=preview_source(settings.contentful),
        on_miss=webhooks.on_miss,
    )
    assembly = await start_assembly(
        redis,
        keys,
        settings.decisions,
        settings.preview,
        ports,
        stack,
        tasks,
        link_depth=settings.service.link_depth,
    )
    admin = settings.service.admin_token
    return AppServices(
        admin=AdminAccess(admin.get_secret_value() if admin else None),
        readiness=Readiness(with_model_status(integration.readiness, assembly.decisions.models)),
        integration=integration,
        segment_sync=segment,
        webhooks=webhooks,
        assembly=assembly,
        tasks=tasks,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: AppSettings = getattr(app.state, "settings", None) or _settings_or_exit()
    configure_logging(settings.service.log_level, json=settings.service.log_json)
    tune_gc()
    async with AsyncExitStack() as stack:
        stack.callback(log.info, "service.stopped")  # the last thing the stack undoes
        app.state.services = services = await start_services(settings, stack)
        integration = services.integration
        log.info(
            "service.started",
            source=integration.sync.source_name,
            embedded_store=integration.embedded,
        )
        yield


def conversion_hook(redis: Redis, keys: Keys, settings: AppSettings) -> Hook:
    """Experiment conversions for the event consumers, called only for goal events (the goals
    of the tests that have data, and the rollout guardrail's), reloaded every second."""

    async def goals() -> set[str]:
        names = {settings.decisions.guardrail_goal_event}
        for test in await redis.smembers(keys.tests_index):
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


def create_app(settings: AppSettings | None = None) -> FastAPI:
    app = FastAPI(
        title="Microbridge",
        version="0.1.0",
        summary="Personalized micro-content from Contentful, per visitor and page view",
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        docs_url=None,  # core.apidocs serves /docs without CDN assets
        redoc_url=None,
        # Metrics are Prometheus (/metrics). FastAPI's built-in OpenTelemetry hooks would look
        # up the global providers on every request (~2% of a page view's CPU, profiled).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    if settings is None:  # `uvicorn app:app`: JSON logs before uvicorn's own first line
        configure_from_environment()
    service = deferred(settings.service if settings else None)
    install_error_handlers(app, catch_all=False)  # HttpGuard answers unexpected errors
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
        HttpGuard,
        settings=service,
        limits={"/webhooks/": 1024 * 1024, **TRACKING_LIMITS},
        cors_paths=("/v1/assemble", *TRACKING_LIMITS),
        direct={("POST", "/v1/assemble"): serve_assemble},
    )
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
