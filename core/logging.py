"""structlog set-up: JSON lines with dotted event names (`contentful.sync.page_applied`).

The standard library's loggers (uvicorn's `uvicorn.error`, `uvicorn.access`, asyncio, …) go
through the same renderer, so with JSON logs on every line on stderr is JSON, an exception's
traceback included (as the `exception` field).
"""

from __future__ import annotations

import logging
import sys

import structlog
from pydantic import ValidationError

from core.settings import ServiceSettings

# Loggers that uvicorn configures with handlers of its own (plain text); ours replace them.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_HANDLER_NAME = "microbridge"


def configure_from_environment() -> None:
    """Logging as `BRIDGE_LOG_LEVEL` / `BRIDGE_LOG_JSON` say, before anything else logs.

    `uvicorn app:app` imports the app before its first own log line; an invalid environment
    falls back to the defaults here (the lifespan then reports it in one line).
    """
    try:
        settings = ServiceSettings()
    except ValidationError:
        configure_logging()
        return
    configure_logging(settings.log_level, json=settings.log_json)


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    numeric = logging.getLevelName(level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(numeric, shared, renderer)


def _route_standard_logging(
    level: int, shared: list[structlog.types.Processor], renderer: structlog.types.Processor
) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.name = _HANDLER_NAME
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.name != _HANDLER_NAME] + [handler]
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        if server_logger.handlers:  # uvicorn's plain-text handler; a silenced logger stays so
            server_logger.handlers.clear()
            server_logger.propagate = True
