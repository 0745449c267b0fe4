"""Game server API: verify, heartbeat, end and check, as the published PlayWave docs define them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from playwave import ids
from playwave.api.deps import api_key, get_runtime, require_json
from playwave.api.envelope import Envelope, error_responses, ok
from playwave.services.keys import AuthenticatedKey

router = APIRouter(
    prefix="/v1/game/session", tags=["Game server"], dependencies=[Depends(require_json)]
)

ApiKeyDep = Annotated[AuthenticatedKey, Depends(api_key)]

GameSessionId = Annotated[
    StrictStr,
    Field(
        pattern=f"^{ids.GAME_SESSION_ID.pattern}$",
        examples=["gs_550e8400-e29b-41d4-a716-446655440000"],
    ),
]
ProviderUserId = Annotated[
    StrictStr,
    Field(
        pattern=f"^{ids.PROVIDER_USER_ID.pattern}$",
        description="Roblox UserId as a decimal string",
        examples=["123456789"],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VerifyRequest(_Body):
    ott: Annotated[
        StrictStr,
        Field(pattern=f"^{ids.OTT.pattern}$", description="The OTT, bare or as playwave_<uuid>"),
    ]
    provider_user_id: ProviderUserId


class SessionRequest(_Body):
    game_session_id: GameSessionId
    provider_user_id: ProviderUserId


class EndRequest(_Body):
    game_session_id: GameSessionId
    play_duration_sec: Annotated[StrictInt | None, Field(ge=0, le=10**9)] = None


class VerifyData(BaseModel):
    is_valid: bool
    game_session_id: str | None = None
    is_pc_cafe: bool | None = None
    reason: str | None = Field(
        None, description="OTT_EXPIRED, OTT_ALREADY_USED, GAME_MISMATCH or NOT_CHARGEABLE"
    )


class HeartbeatData(BaseModel):
    result: str = Field(description="OK, CHARGE_EXHAUSTED or SESSION_REPLACED")
    next_heartbeat_in: int
    play_duration_sec: int


class EndData(BaseModel):
    result: str = "SUCCESS"
    play_duration_sec: int
    client_play_duration_sec: int | None


class CheckData(BaseModel):
    is_valid: bool
    game_session_id: str
    is_pc_cafe: bool
    play_duration_sec: int


@router.post(
    "/verify",
    summary="Verify a one-time token and start a billed session",
    response_model=Envelope[VerifyData],
    responses=error_responses(400, 401, 429, 500, 503),
)
async def verify(request: Request, body: VerifyRequest, key: ApiKeyDep) -> JSONResponse:
    ott = ids.parse_ott(body.ott)
    assert ott is not None  # the body pattern admits only OTTs
    outcome = await get_runtime(request).sessions.verify(key, ott, body.provider_user_id)
    if outcome.is_valid:
        data = {"is_valid": True, "game_session_id": outcome.game_session_id, "is_pc_cafe": True}
    else:
        data = {"is_valid": False, "reason": outcome.reason}
    return ok(request, data)


@router.patch(
    "/heartbeat",
    summary="Keep a session alive",
    response_model=Envelope[HeartbeatData],
    responses=error_responses(400, 401, 404, 410, 429, 500, 503),
)
async def heartbeat(request: Request, body: SessionRequest, key: ApiKeyDep) -> JSONResponse:
    request.state.game_session_id = body.game_session_id
    outcome = await get_runtime(request).sessions.heartbeat(
        key, body.game_session_id, body.provider_user_id
    )
    return ok(
        request,
        {
            "result": outcome.result,
            "next_heartbeat_in": outcome.next_heartbeat_in,
            "play_duration_sec": outcome.play_duration_sec,
        },
    )


@router.delete(
    "/end",
    summary="End a session and stop billing",
    response_model=Envelope[EndData],
    responses=error_responses(400, 401, 404, 409, 429, 500, 503),
)
async def end(request: Request, body: EndRequest, key: ApiKeyDep) -> JSONResponse:
    outcome = await get_runtime(request).sessions.end(
        key, body.game_session_id, body.play_duration_sec
    )
    return ok(
        request,
        {
            "result": "SUCCESS",
            "play_duration_sec": outcome.play_duration_sec,
            "client_play_duration_sec": outcome.client_play_duration_sec,
        },
    )


@router.post(
    "/check",
    summary="Confirm a session after a teleport",
    response_model=Envelope[CheckData],
    responses=error_responses(400, 401, 404, 410, 429, 500, 503),
)
async def check(request: Request, body: SessionRequest, key: ApiKeyDep) -> JSONResponse:
    outcome = await get_runtime(request).sessions.check(
        key, body.game_session_id, body.provider_user_id
    )
    return ok(
        request,
        {
            "is_valid": True,
            "game_session_id": body.game_session_id,
            "is_pc_cafe": True,
            "play_duration_sec": outcome.play_duration_sec,
        },
    )
