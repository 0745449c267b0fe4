"""A no-op game-server route that benchmarks measure the real routes against.

It is registered only when `PLAYWAVE_BENCHMARK_ROUTES=true`. A request passes through the same
middleware, JSON check, API key dependency and rate limits as the game session routes, and its
body is parsed by a model with the same field rules, so the difference between this route and
a real one is the service and store work alone. It accepts the bodies of verify, heartbeat and
end, and answers an envelope the size of a heartbeat answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from playwave import ids
from playwave.api.deps import api_key, require_json
from playwave.api.envelope import Envelope, error_responses, ok
from playwave.api.routes.game import HeartbeatData
from playwave.services.keys import AuthenticatedKey

router = APIRouter(prefix="/v1/bench", tags=["Benchmark"], dependencies=[Depends(require_json)])


class NoopRequest(BaseModel):
    """Any game session request body, with each field checked as the real routes check it."""

    model_config = ConfigDict(extra="ignore")

    game_session_id: Annotated[
        StrictStr | None, Field(pattern=f"^{ids.GAME_SESSION_ID.pattern}$")
    ] = None
    provider_user_id: Annotated[
        StrictStr | None, Field(pattern=f"^{ids.PROVIDER_USER_ID.pattern}$")
    ] = None
    ott: Annotated[StrictStr | None, Field(pattern=f"^{ids.OTT.pattern}$")] = None
    play_duration_sec: Annotated[StrictInt | None, Field(ge=0, le=10**9)] = None


@router.api_route(
    "/noop",
    methods=["POST", "PATCH", "DELETE"],
    summary="Authenticate and parse a game session request, then do nothing",
    response_model=Envelope[HeartbeatData],
    responses=error_responses(400, 401, 429),
)
async def noop(
    request: Request,
    body: NoopRequest,
    key: Annotated[AuthenticatedKey, Depends(api_key)],
) -> JSONResponse:
    return ok(request, {"result": "OK", "next_heartbeat_in": 120, "play_duration_sec": 0})
