"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from playwave.api.deps import get_runtime
from playwave.stores.base import StoreUnavailable

router = APIRouter(tags=["Operations"])


@router.get("/healthz", summary="Process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Records and live store are reachable")
async def readyz(request: Request) -> JSONResponse:
    runtime = get_runtime(request)
    checks: dict[str, str] = {}
    for name, store in (("records", runtime.records), ("live", runtime.live)):
        try:
            await store.ping()
            checks[name] = "ok"
        except StoreUnavailable as error:
            checks[name] = f"unavailable: {error}"
        except Exception as error:
            checks[name] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
