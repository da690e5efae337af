"""Microbridge command line: serve, sync, fallback export, model apply, results, explain,
worker.

A failure prints one line (`microbridge: sync failed: ConnectionError: …`) and exits non-zero;
commands that work on the shared store refuse to run on the throwaway embedded one.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import app as application
from assembly.exceptions import ExperimentNotFound
from assembly.experiments.results import results_table, stored_results
from assembly.fallback import FALLBACK_FILE, export_fallback
from assembly.schemas import AssembleRequest
from core.errors import BridgeError
from core.logging import configure_logging
from integration.library import compile_library
from integration.sync import SyncProgress

cli = typer.Typer(
    help="Microbridge: personalized micro-content from Contentful.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
fallback_cli = typer.Typer(help="The bundled fallback library.", no_args_is_help=True)
cli.add_typer(fallback_cli, name="fallback")
model_cli = typer.Typer(help="Our content model in a Contentful space.", no_args_is_help=True)
cli.add_typer(model_cli, name="model")
console = Console(stderr=True, soft_wrap=True)


def _settings() -> application.AppSettings:
    try:
        return application.load_settings()
    except application.ConfigurationError as exc:
        console.print(str(exc.code), markup=False)
        raise typer.Exit(2) from None


def _shared_settings(command: str) -> application.AppSettings:
    """Settings of a command that reads or writes the shared store: REDIS_URL is required."""
    settings = _settings()
    if settings.store.url is None:
        console.print(
            f"microbridge: {command} needs the shared store: set REDIS_URL (without it the "
            "store lives inside this one process and is gone when it ends)",
            markup=False,
        )
        raise typer.Exit(2)
    return settings


WORKER_START_SECONDS = 60


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default BRIDGE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default BRIDGE_PORT, 8080).")] = None,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Processes sharing the port (more than 1 needs REDIS_URL)."),
    ] = 1,
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from core.server import uvicorn_options

    settings = _shared_settings("serve --workers") if workers > 1 else _settings()
    bind_host = host or settings.service.host
    bind_port = port or settings.service.port
    configure_logging(settings.service.log_level, json=settings.service.log_json)
    if settings.store.url is None or not settings.contentful.configured:
        console.print(
            f"Microbridge on http://{bind_host}:{bind_port}  (demo space, embedded store when "
            "unconfigured)\nTry:\n  curl -s localhost:%d/v1/assemble -H 'content-type: "
            'application/json\' -d \'{"template": "home", "user": {"anonymousId": "a1"}, '
            '"context": {"audiences": ["cart_abandoners"]}}\'' % bind_port,
            markup=False,
        )
    options = {**uvicorn_options(settings.service), "host": bind_host, "port": bind_port}
    if workers > 1:
        # Each worker process builds the app and its settings from the environment; the HTTP
        # protocol reads its limits from there too (a class made here would not pickle).
        # A worker answers the supervisor's health pings only once it has imported the app
        # (seconds on a busy machine): uvicorn's 5 s default would kill workers mid-start.
        options["http"] = "core.server:BridgeHttpProtocol"
        options["timeout_worker_healthcheck"] = WORKER_START_SECONDS
        uvicorn.run("app:create_app", factory=True, workers=workers, **options)
        return
    uvicorn.run(application.create_app(settings), **options)


@cli.command()
def sync(
    full: bool = typer.Option(False, help="Start over and prune what the space lost."),
) -> None:
    """Run one sync now (initial, delta from the stored token, or full) and print a summary."""
    settings = _shared_settings("sync")
    configure_logging("warning", json=True)
    result = asyncio.run(_sync(settings, full))
    console.print(
        f"sync {result.mode}: {result.pages} page(s), {result.upserts} upserted, "
        f"{result.deletions} deleted, {result.pruned} pruned, content version {result.version}, "
        f"{result.seconds:.2f}s",
        markup=False,
    )


async def _sync(settings: application.AppSettings, full: bool) -> SyncProgress:
    runtime = application.build_runtime(settings)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("waiting for the sync lease (a replica is syncing)", total=None)

            def report(state: SyncProgress) -> None:
                bar.update(
                    task,
                    description=f"{state.mode} sync: page {state.pages}, "
                    f"{state.upserts} upserted, {state.deletions} deleted",
                )

            while True:
                async with runtime.lock.held() as mine:
                    if mine:
                        bar.update(task, description="syncing")
                        return await runtime.sync.run(full=full, progress=report)
                await asyncio.sleep(0.5)
    finally:
        await runtime.redis.aclose()


@fallback_cli.command("export")
def fallback_export(
    output: Annotated[
        Path, typer.Option(help="Where to write the fallback library.")
    ] = FALLBACK_FILE,
    locale: Annotated[str | None, typer.Option(help="Locale of the fallback content.")] = None,
) -> None:
    """Sync, compile, and write the baselines as the bundled fallback library."""
    settings = _settings()
    configure_logging("warning", json=True)
    document = asyncio.run(_export(settings, locale))
    output.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    console.print(f"wrote {len(document['slots'])} slot(s) to {output}", markup=False)


async def _export(settings: application.AppSettings, locale: str | None) -> dict[str, Any]:
    runtime = application.build_runtime(settings)
    try:
        await runtime.sync.run()
        library = compile_library(
            await runtime.content.load(), link_depth=settings.service.link_depth
        )
        return export_fallback(library, locale)
    finally:
        await runtime.redis.aclose()


@model_cli.command("apply")
def model_apply(
    dry_run: Annotated[bool, typer.Option(help="Only print the diff; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Apply without asking.")] = False,
    space_id: Annotated[
        str | None, typer.Option(help="Space (default CONTENTFUL_SPACE_ID).")
    ] = None,
    environment: Annotated[
        str | None, typer.Option(help="Environment (default CONTENTFUL_ENVIRONMENT).")
    ] = None,
) -> None:
    """Create or update the mb* content types from templates/content-model.json, then activate."""
    settings = _settings()
    configure_logging("warning", json=True)
    try:
        _model_apply(settings, space_id, environment, dry_run=dry_run, yes=yes)
    except BridgeError as exc:
        console.print(f"microbridge: model apply failed: {_one_line(exc)}", markup=False)
        raise typer.Exit(1) from None


def _model_apply(
    settings: application.AppSettings,
    space_id: str | None,
    environment: str | None,
    *,
    dry_run: bool,
    yes: bool,
) -> None:
    from integration.content_model import service
    from integration.content_model.client import ManagementClient
    from integration.content_model.definition import load_model

    client = ManagementClient(settings.contentful, space_id=space_id, environment=environment)
    model = load_model()
    where = f"space {client.space_id}, environment {client.environment}"
    planned = service.plan(client, model)
    for line in planned.lines():
        print(line)
    if planned.refusals:
        console.print(
            f"microbridge: model apply {service.refused(planned.refusals)}; nothing was changed",
            markup=False,
        )
        raise typer.Exit(1)
    if not planned.changes:
        console.print(f"no changes: {where} already matches the model", markup=False)
        return
    if dry_run:
        console.print(f"dry run: {len(planned.changes)} change(s), nothing applied", markup=False)
        return
    _confirm(f"apply {len(planned.changes)} change(s) to {where}?", yes)
    applied = service.apply(client, model, planned)
    console.print(
        f"applied {len(applied.changes)} change(s) to {where}; every mb* type is active",
        markup=False,
    )


def _confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, only --yes goes ahead."""
    if yes:
        return
    if not sys.stdin.isatty():
        console.print(
            "microbridge: model apply needs a confirmation and stdin is not a terminal: "
            "pass --yes to apply, or --dry-run to only see the diff",
            markup=False,
        )
        raise typer.Exit(2)
    if not typer.confirm(question, default=False, err=True):
        console.print("nothing changed", markup=False)
        raise typer.Exit(1)


@cli.command()
def results(
    key: Annotated[str, typer.Argument(help="The experiment key.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Experiment results: per arm exposures, conversions, rate, uplift, p-value, SRM check."""
    settings = _shared_settings("results")
    configure_logging("warning", json=True)
    try:
        document = asyncio.run(_results(settings, key))
    except ExperimentNotFound as exc:
        console.print(exc.detail, markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        Console(soft_wrap=True).print(results_table(document))


async def _results(settings: application.AppSettings, key: str) -> dict[str, Any]:
    runtime = application.build_runtime(settings)
    try:
        return await stored_results(
            runtime.redis, runtime.keys, runtime.content, key, settings.decisions
        )
    finally:
        await runtime.redis.aclose()


@cli.command()
def explain(
    template: Annotated[str | None, typer.Option(help="The page (template key).")] = None,
    slot: Annotated[list[str] | None, typer.Option(help="A slot key instead (repeat).")] = None,
    user: Annotated[str | None, typer.Option(help="The visitor's userId.")] = None,
    anonymous_id: Annotated[str | None, typer.Option(help="The visitor's anonymousId.")] = None,
    session: Annotated[str | None, typer.Option(help="The sessionId.")] = None,
    locale: Annotated[str | None, typer.Option(help="The locale.")] = None,
    context: Annotated[
        str, typer.Option(help="The request context as JSON, e.g. '{\"consent\": true}'.")
    ] = "{}",
    at: Annotated[
        str | None, typer.Option(help="Decide as of this ISO time (default now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, not tables.")] = False,
) -> None:
    """Why a visitor sees what they see: every slot's candidates and rules (writes nothing)."""
    from assembly.explain.table import explain_tables

    settings = _shared_settings("explain")
    configure_logging("warning", json=True)
    request = _explain_request(template, slot, user, anonymous_id, session, locale, context)
    try:
        now = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        console.print(f"microbridge: explain: --at {at!r} is not an ISO time", markup=False)
        raise typer.Exit(2) from None
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        document = asyncio.run(_explain(settings, request, now))
    except BridgeError as exc:
        console.print(f"microbridge: explain: {exc.detail}", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        print(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        Console(soft_wrap=True, width=200).print(explain_tables(document))


def _explain_request(
    template: str | None,
    slots: list[str] | None,
    user: str | None,
    anonymous_id: str | None,
    session: str | None,
    locale: str | None,
    context: str,
) -> AssembleRequest:
    """The assemble body the options describe; a bad one ends with one line and exit 2."""
    try:
        return AssembleRequest.model_validate(
            {
                "template": template,
                "slots": slots or None,
                "user": {"id": user, "anonymousId": anonymous_id},
                "sessionId": session,
                "locale": locale,
                "context": orjson.loads(context),
            }
        )
    except (ValidationError, orjson.JSONDecodeError) as exc:
        console.print(f"microbridge: explain: not a valid request: {_one_line(exc)}", markup=False)
        raise typer.Exit(2) from None


async def _explain(
    settings: application.AppSettings, request: AssembleRequest, now: datetime
) -> dict[str, Any]:
    from assembly.explain.local import explain_from_store

    runtime = application.build_runtime(settings)
    try:
        return await explain_from_store(
            runtime.redis,
            runtime.keys,
            runtime.content,
            settings.decisions,
            request,
            now=now,
            link_depth=settings.service.link_depth,
        )
    finally:
        await runtime.redis.aclose()


@cli.command()
def insights(
    goal: Annotated[str, typer.Option(help="The goal event (a track name): Order Completed.")],
    window: Annotated[str, typer.Option(help="How far back: 7d, 24h, 30m.")] = "7d",
    out: Annotated[Path | None, typer.Option(help="Report folder (default INSIGHTS_DIR).")] = None,
) -> None:
    """Trigger discovery: what predicts the goal; writes insights.json and insights.html."""
    from assembly.insights.command import run_command

    settings = _shared_settings("insights")
    configure_logging("warning", json=True)
    try:
        summary = asyncio.run(
            run_command(
                settings.store,
                goal=goal,
                window=window,
                out=out,
                console=console,
                shards=settings.segment.stream_shards,
            )
        )
    except BridgeError as exc:
        console.print(exc.detail, markup=False)
        raise typer.Exit(2) from None
    console.print(summary, markup=False)


@cli.command(name="train")
def train_model(
    goal: Annotated[str, typer.Option(help="The goal event (a track name): Order Completed.")],
    window: Annotated[str, typer.Option(help="How far back: 7d, 24h, 30m.")] = "7d",
    publish: Annotated[
        bool, typer.Option(help="Publish the model to every replica (--no-publish: dry run).")
    ] = True,
    max_decisions: Annotated[
        int | None, typer.Option(min=100, help="Decision-log records read at most.")
    ] = None,
    max_events: Annotated[
        int | None, typer.Option(min=100, help="Event-stream entries scanned at most.")
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds of reading at most.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the summary (JSON) here.")] = None,
) -> None:
    """Fit the per-slot ranking model from the decision log and goal events; publish it."""
    from assembly.learning.command import run_command as run_train
    from assembly.learning.config import LearningSettings

    settings = _shared_settings("train")
    configure_logging("warning", json=True)
    overrides: dict[str, Any] = {
        "max_decisions": max_decisions,
        "max_events": max_events,
        "time_budget_seconds": time_budget,
    }
    learning = LearningSettings().model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    try:
        line, summary = asyncio.run(
            run_train(
                settings.store,
                goal=goal,
                window=window,
                publish=publish,
                settings=learning,
                console=console,
                shards=settings.segment.stream_shards,
            )
        )
    except BridgeError as exc:
        console.print(exc.detail, markup=False)
        raise typer.Exit(2) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    console.print(line, markup=False)


@cli.command()
def worker(
    consumers: Annotated[
        int, typer.Option(min=1, max=64, help="Consumer tasks in this process.")
    ] = 1,
) -> None:
    """Apply tracked events to profiles (the event stream's consumer group), until stopped."""
    from segment_sync.tracking.service import run_worker

    settings = _shared_settings("worker")
    configure_logging(settings.service.log_level, json=settings.service.log_json)
    asyncio.run(
        run_worker(
            settings.store,
            settings.segment,
            consumers=consumers,
            hooks_factory=lambda redis, keys: [application.conversion_hook(redis, keys, settings)],
        )
    )


def main() -> int:
    """Run the command; any failure is one line on stderr and exit code 1, never a traceback."""
    try:
        cli()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last stop: one line for the operator
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "command")
        console.print(f"microbridge: {command} failed: {_one_line(exc)}", markup=False)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
