"""Structured logging: JSON lines carrying the request id and the ids involved."""

from __future__ import annotations

import logging
import sys

import structlog

_SECRET_FIELDS = {"api_key", "secret", "token", "launcher_session_token", "authorization"}


def _drop_secrets(_logger: object, _method: str, event: dict[str, object]) -> dict[str, object]:
    for field in _SECRET_FIELDS & event.keys():
        event[field] = "[redacted]"
    return event


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Send structlog and standard logging through one JSON (or console) renderer on stderr."""
    renderer = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
