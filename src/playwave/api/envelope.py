"""The response envelope shared by every API.

Success: `{"success": true, "request_id": ..., "data": {...}}`. Error: `{"success": false,
"request_id": ..., "error": {"code", "message", "timestamp"}}` with a UTC timestamp in
milliseconds. The request id is echoed in the `X-Request-Id` header by the middleware.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from playwave.clock import SystemClock, to_iso

DataT = TypeVar("DataT")

_fallback_clock = SystemClock()


class Envelope(BaseModel, Generic[DataT]):
    success: bool = True
    request_id: str
    data: DataT


class ErrorBody(BaseModel):
    code: str
    message: str
    timestamp: str


class ErrorEnvelope(BaseModel):
    success: bool = False
    request_id: str
    error: ErrorBody


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "req_unknown"


def ok(request: Request, data: BaseModel | dict[str, Any]) -> JSONResponse:
    body = data.model_dump() if isinstance(data, BaseModel) else data
    return JSONResponse({"success": True, "request_id": request_id_of(request), "data": body})


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    runtime = getattr(request.app.state, "runtime", None)
    now = runtime.clock.now() if runtime is not None else _fallback_clock.now()
    return JSONResponse(
        {
            "success": False,
            "request_id": request_id_of(request),
            "error": {"code": code, "message": message, "timestamp": to_iso(now)},
        },
        status_code=status,
        headers=headers,
    )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Return OpenAPI response entries for `statuses`, all in the error envelope."""
    return {status: {"model": ErrorEnvelope} for status in statuses}
