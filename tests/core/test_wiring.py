"""Typed wiring: the lifespan builds one services object, app.py alone puts it on `app.state`,
routes get their parts through typed dependencies, and shutdown ends every package's tasks.

The source scan reads every production module: outside app.py, the only code that touches
`app.state` is `core/services.py`'s getter, which finds a part by its type.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import typing
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app import AppServices, create_app
from core.tasks import BackgroundTasks, stop_tasks
from tests.segment_sync.tracking_support import bridge_settings, events_settings
from tests.support.app import make_settings, running_app
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("cli.py", "assembly", "bench", "core", "integration", "segment_sync", "webhooks")
GETTER = Path("core/services.py")


def modules() -> list[Path]:
    found: list[Path] = []
    for name in SOURCES:
        path = ROOT / name
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def app_state_uses(source: str) -> list[tuple[int, str]]:
    """(line, kind) of every write and every read of `app.state` in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if _is_state(node):
            found.append((line, "read"))
        if any(_is_state(t) or _is_state(getattr(t, "value", None)) for t in _targets(node)):
            found.append((line, "write"))
    return found


def _targets(node: ast.AST) -> list[ast.AST]:
    """What `node` assigns or deletes; for `setattr`, an attribute of its first argument."""
    if isinstance(node, ast.Assign | ast.Delete):
        return list(node.targets)
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("setattr", "delattr"):
        return [ast.Attribute(value=node.args[0], attr="?")] if node.args else []
    return []


def _is_state(node: ast.AST | None) -> bool:
    """`app.state`, `<anything>.app.state` (such as `request.app.state`) or
    `<anything>["app"].state` (an ASGI scope's app)."""
    if not (isinstance(node, ast.Attribute) and node.attr == "state"):
        return False
    owner = node.value
    return (
        (isinstance(owner, ast.Name) and owner.id == "app")
        or (isinstance(owner, ast.Attribute) and owner.attr == "app")
        or (
            isinstance(owner, ast.Subscript)
            and isinstance(owner.slice, ast.Constant)
            and owner.slice.value == "app"
        )
    )


class TestSourceScan:
    def test_the_scan_sees_writes_and_reads(self) -> None:
        source = (
            "app.state.x = 1\n"
            "app.state = object()\n"
            "request.app.state.y += 1\n"
            "setattr(request.app.state, 'z', 2)\n"
            "v = request.app.state.services\n"
            "w = request.state.per_request\n"
            "u = scope['app'].state.services\n"
        )
        kinds = {line: kind for line, kind in app_state_uses(source) if kind == "write"}
        assert sorted(kinds) == [1, 2, 3, 4]
        reads = [line for line, kind in app_state_uses(source) if kind == "read"]
        assert 5 in reads
        assert 6 not in reads, "request.state is per request, not the app's"
        assert 7 in reads, "an ASGI scope's app is the app"

    def test_no_module_but_app_py_writes_app_state(self) -> None:
        writes = [
            f"{path.relative_to(ROOT)}:{line}"
            for path in modules()
            for line, kind in app_state_uses(path.read_text())
            if kind == "write"
        ]
        assert writes == []

    def test_only_the_typed_getter_reads_app_state(self) -> None:
        reads = [
            f"{path.relative_to(ROOT)}:{line}"
            for path in modules()
            if path.relative_to(ROOT) != GETTER
            for line, _ in app_state_uses(path.read_text())
        ]
        assert reads == []
        assert app_state_uses((ROOT / GETTER).read_text()), "the getter is where it is read"


def _dependencies(dependant: Dependant) -> list[Dependant]:
    found = []
    for sub in dependant.dependencies:
        found += [sub, *_dependencies(sub)]
    return found


def test_every_route_dependency_declares_what_it_returns() -> None:
    app = create_app(make_settings(None))
    untyped = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        for dependency in _dependencies(route.dependant):
            hints = typing.get_type_hints(dependency.call)
            if hints.get("return", typing.Any) is typing.Any:
                untyped.append(f"{route.path}: {dependency.call}")
    assert untyped == []


async def test_before_the_lifespan_a_route_answers_503_json() -> None:
    app = create_app(make_settings(None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
        ready = await client.get("/readyz")
        page = await client.post("/v1/assemble", json={"template": "home"})
    for answer in (ready, page):
        assert answer.status_code == 503
        assert answer.json()["error"] == "NotStarted"


async def test_each_part_is_found_by_its_type(redis_server: RedisServer) -> None:
    async with running_app(make_settings(redis_server.url)) as (app, _):
        services: AppServices = app.state.services
        own = {"settings", "tasks"}  # app.py's own, not asked for by a route
        for field in dataclasses.fields(services):
            if field.name not in own:
                part = getattr(services, field.name)
                assert services.part(type(part)) is part, field.name
        with pytest.raises(LookupError):
            services.part(BackgroundTasks)


async def test_shutdown_ends_the_tasks_of_every_package(redis_server: RedisServer) -> None:
    settings = bridge_settings(redis_server.url, events_settings())
    async with running_app(settings) as (app, _):
        services: AppServices = app.state.services
        assert services.integration.tasks is services.tasks, "one registry for the app"
        tasks = list(services.tasks)
        names = {task.get_name().rstrip("-0123456789") for task in tasks}  # one per shard
        started = {"sync", "library-watch", "segment-consumer", "decision-writer"}
        assert started | {"library-snapshot", "decision-log-writer"} <= names
    assert all(task.done() for task in tasks)
    assert list(services.tasks) == []


class TestBackgroundTasks:
    async def test_a_finished_task_leaves_the_set(self) -> None:
        tasks = BackgroundTasks()
        done = tasks.spawn(asyncio.sleep(0), name="quick")
        await done
        await asyncio.sleep(0)
        assert done not in tasks

    async def test_every_task_ends_before_any_package_closer_runs(self) -> None:
        """Two packages, each registering a closer then `stop` on one exit stack."""
        events: list[str] = []
        tasks = BackgroundTasks()

        async def run(name: str) -> None:
            try:
                await asyncio.sleep(60)
            finally:
                events.append(f"{name} task ended")

        async def close(name: str) -> None:
            events.append(f"{name} closed")

        async with AsyncExitStack() as stack:
            for name in ("integration", "assembly"):
                stack.push_async_callback(close, name)
                stack.push_async_callback(tasks.stop)
                tasks.spawn(run(name), name=name)
            await asyncio.sleep(0)
        assert sorted(events[:2]) == ["assembly task ended", "integration task ended"]
        assert events[2:] == ["assembly closed", "integration closed"]

    async def test_stop_ends_a_task_that_swallows_the_first_cancel(self) -> None:
        async def stubborn() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:  # as redis-py may turn it into a retried timeout
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            await asyncio.sleep(60)

        tasks = BackgroundTasks()
        task = tasks.spawn(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        await tasks.stop()
        assert task.cancelled()

    async def test_stop_gives_up_after_its_attempts(self) -> None:
        release = asyncio.Event()

        async def stuck() -> None:
            while not release.is_set():
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]

        task = asyncio.create_task(stuck(), name="stuck")
        await asyncio.sleep(0)
        await stop_tasks([task], attempts=2)
        assert not task.done()
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
