"""ASGI middleware: request ids, the body size limit, access metrics and logs."""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from playwave import ids, metrics
from playwave.clock import SystemClock, to_iso

log = structlog.get_logger("playwave.http")
_clock = SystemClock()


class RequestContextMiddleware:
    """Assign each request an id, cap its body size and record its route, status and latency.

    A valid incoming `X-Request-Id` is reused so a caller can trace its own requests. A body
    larger than `max_body_bytes` is answered with 400 before any handler runs, whether the size
    was declared in Content-Length or discovered while reading a chunked body.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or ids.new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _reject_oversized(send, request_id, self.max_body_bytes)
            status_holder["status"] = 400
            self._observe(scope, status_holder["status"], started)
            structlog.contextvars.unbind_contextvars("request_id")
            return

        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal response_started
            if too_large:
                # The framework answers its own parse error when reading the body failed; the
                # client gets the size error instead, once.
                if message["type"] == "http.response.start" and not response_started:
                    response_started = True
                    status_holder["status"] = 400
                    await _reject_oversized(send, request_id, self.max_body_bytes)
                return
            if message["type"] == "http.response.start":
                response_started = True
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge:
            if not response_started:
                await _reject_oversized(send, request_id, self.max_body_bytes)
            status_holder["status"] = 400
        finally:
            if too_large and not response_started:
                status_holder["status"] = 400
            self._observe(scope, status_holder["status"], started)
            structlog.contextvars.unbind_contextvars("request_id")

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        elapsed = time.perf_counter() - started
        metrics.HTTP_REQUESTS.labels(route_path, method, str(status)).inc()
        metrics.HTTP_LATENCY.labels(route_path, method).observe(elapsed)
        if status >= 500:
            log.warning("request_failed", method=method, path=scope.get("path"), status=status)


class BodyTooLarge(Exception):
    pass


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if ids.REQUEST_ID.fullmatch(text):
                return text
            return None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject_oversized(send: Send, request_id: str, limit: int) -> None:
    body: dict[str, Any] = {
        "success": False,
        "request_id": request_id,
        "error": {
            "code": "BAD_REQUEST",
            "message": f"The request body is larger than the limit of {limit} bytes.",
            "timestamp": to_iso(_clock.now()),
        },
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
