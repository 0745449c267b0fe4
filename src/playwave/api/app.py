"""The ASGI application: routers, error handlers and the process lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from playwave import __version__
from playwave.api.envelope import error_response
from playwave.api.middleware import RequestContextMiddleware
from playwave.api.ratelimit import FixedWindowLimiter
from playwave.api.routes import game, health
from playwave.runtime import Runtime, build_runtime
from playwave.services.errors import RateLimited, ServiceError
from playwave.settings import Settings
from playwave.stores.base import StoreUnavailable

log = structlog.get_logger("playwave.api")


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    run_jobs: bool | None = None,
) -> FastAPI:
    """Build the application.

    With `runtime`, the caller owns it (tests); otherwise the lifespan builds one from
    `settings` and closes it on shutdown. Background jobs run in this process when `run_jobs`
    is true, which defaults to true on the embedded default.
    """
    settings = settings or (runtime.settings if runtime else Settings())
    should_run_jobs = settings.embedded if run_jobs is None else run_jobs

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        current = runtime or await build_runtime(settings)
        app.state.runtime = current
        if should_run_jobs:
            await current.start_jobs()
        log.info("server_started", embedded=settings.embedded, jobs=should_run_jobs)
        try:
            yield
        finally:
            # Uvicorn has stopped accepting and drained in-flight requests by now. Stopping the
            # jobs runs each step once more, so queued heartbeats and partner calls are flushed.
            if should_run_jobs:
                await current.stop_jobs()
            if owned:
                await current.close()
            log.info("server_stopped")

    app = FastAPI(
        title="PlayWave server",
        version=__version__,
        description="Game server, launcher and operator APIs of PlayWave.",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    app.state.rate_limits = {
        "ip": FixedWindowLimiter(settings.rate_limit_per_ip_per_min),
        "key": FixedWindowLimiter(settings.rate_limit_per_key_per_min),
    }
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    _add_error_handlers(app)
    app.include_router(game.router)
    app.include_router(health.router)
    for router in _extra_routers():
        app.include_router(router)
    app.openapi = lambda: _openapi_without_422(app)
    if settings.benchmark_routes:
        from playwave.api.routes import bench

        app.include_router(bench.router)
    return app


def _openapi_without_422(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document without FastAPI's default 422 responses.

    Invalid input gets 400 BAD_REQUEST in the error envelope, which the routes declare
    themselves, so the generated 422 entries would document responses that never occur.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    app.openapi_schema = document
    return document


def _extra_routers() -> list[Any]:
    """Routers of the launcher and admin APIs, when their modules are present."""
    routers = []
    for module_name in ("playwave.api.routes.launcher", "playwave.api.routes.admin"):
        try:
            module = __import__(module_name, fromlist=["router"])
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        routers.append(module.router)
    return routers


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        headers = None
        if isinstance(error, RateLimited):
            headers = {"Retry-After": str(error.retry_after)}
        return error_response(request, error.status, error.code, error.message, headers)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, error: StoreUnavailable) -> JSONResponse:
        log.warning("store_unavailable", path=request.url.path, error=str(error))
        return error_response(
            request,
            503,
            "SERVICE_UNAVAILABLE",
            "A storage dependency is unavailable; the request changed nothing and may be retried.",
            {"Retry-After": "1"},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, "BAD_REQUEST", describe_validation_error(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            code, message = "NOT_FOUND", f"No route matches {request.url.path}."
        elif error.status_code == 405:
            code, message = (
                "METHOD_NOT_ALLOWED",
                f"Method {request.method} is not allowed on {request.url.path}.",
            )
        else:
            code, message = "BAD_REQUEST", str(error.detail)
        return error_response(
            request,
            error.status_code,
            code,
            message,
            dict(error.headers) if error.headers else None,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected_error", path=request.url.path)
        return error_response(
            request,
            500,
            "INTERNAL_ERROR",
            "An unexpected error occurred and nothing was half-written. "
            "Retry, or report the request id.",
        )


def describe_validation_error(error: RequestValidationError) -> str:
    """Return one English sentence naming the first invalid field and what is wrong with it."""
    problems = error.errors()
    if not problems:
        return "The request is invalid."
    first = problems[0]
    kind = first.get("type", "")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(location)

    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if kind == "missing" and not field:
        return "The request body is missing; send a JSON object."
    if kind in ("model_attributes_type", "dict_type") and not field:
        return "The request body must be a JSON object."
    if kind == "missing":
        return f"Field '{field}' is required."
    if kind == "string_pattern_mismatch":
        return f"Field '{field}' has an invalid format."
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"Field '{field}' has the wrong type: {first.get('msg', 'invalid')}."
    return f"Field '{field}' is invalid: {first.get('msg', 'invalid value')}."
