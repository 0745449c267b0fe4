"""Launcher API: signed session start, OTT issue, heartbeat and end.

Every request carries the `X-PlayWave-*` signature headers, checked against the raw body bytes
before the body is parsed as JSON. Calls after the start also carry
`Authorization: Bearer <launcher_session_token>`.
"""

from __future__ import annotations

import json
from ipaddress import ip_address
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from playwave import ids
from playwave.api.app import describe_validation_error
from playwave.api.deps import client_ip, get_runtime, require_json
from playwave.api.envelope import Envelope, error_responses, ok
from playwave.services.errors import BadRequest, RateLimited
from playwave.services.launcher import LauncherSessions
from playwave.services.launcher_keys import LauncherKeys
from playwave.stores.base import LauncherSession

router = APIRouter(prefix="/v1/launcher", tags=["Launcher"], dependencies=[Depends(require_json)])

SIGNATURE_NOTE = (
    " Signed with the X-PlayWave-Key-Id, X-PlayWave-Timestamp, X-PlayWave-Nonce and "
    "X-PlayWave-Signature headers."
)

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StartRequest(_Body):
    pc_id: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=128,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="Stable hardware fingerprint of the PC",
        ),
    ]
    internal_ip: Annotated[StrictStr, Field(max_length=64, description="The PC's LAN address")]
    hardware: dict[str, Any] = Field(description="Hardware description, stored as sent")
    launcher_version: Annotated[StrictStr, Field(min_length=1, max_length=64)]

    @field_validator("internal_ip")
    @classmethod
    def _normalise_ip(cls, value: str) -> str:
        try:
            return str(ip_address(value))
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address") from None


class OttRequest(_Body):
    game_id: Annotated[StrictStr, Field(pattern=f"^{ids.GAME_ID.pattern}$")]


class EmptyRequest(_Body):
    pass


class PcCafe(BaseModel):
    id: str
    name: str


class LauncherGame(BaseModel):
    game_id: str
    name: str
    roblox_place_id: int | None


class StartData(BaseModel):
    launcher_session_id: str
    launcher_session_token: str = Field(description="Shown once; send it as a Bearer token")
    pc_cafe: PcCafe
    games: list[LauncherGame]
    heartbeat_interval_sec: int


class OttData(BaseModel):
    ott: str
    launch_data: str = Field(description="Pass to Roblox as LaunchData: playwave_<ott>")
    expires_in: int


class HeartbeatData(BaseModel):
    next_heartbeat_in: int


class EndData(BaseModel):
    result: str = "SUCCESS"
    ended_game_session_ids: list[str]


def _launchers(request: Request) -> LauncherSessions:
    state = request.app.state
    if getattr(state, "launchers", None) is None:
        state.launchers = LauncherSessions.from_runtime(get_runtime(request))
    return state.launchers


def _launcher_keys(request: Request) -> LauncherKeys:
    state = request.app.state
    if getattr(state, "launcher_keys", None) is None:
        runtime = get_runtime(request)
        state.launcher_keys = LauncherKeys(
            runtime.records,
            runtime.live,
            runtime.clock,
            runtime.settings.resolve_secret_key(),
            cache_seconds=runtime.settings.api_key_cache_sec,
        )
    return state.launcher_keys


def _request_target(request: Request) -> str:
    """Return the path and query exactly as the client sent them."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = raw_path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def signed_request(request: Request) -> str:
    """Check the request's signature over its raw body; return the launcher key id."""
    limits = request.app.state.rate_limits
    ip = client_ip(request)
    wait = limits["ip"].hit(ip)
    if wait is not None:
        raise RateLimited(f"Too many requests from {ip}; retry after {wait} s.", wait)

    body = await request.body()
    key_id = await _launcher_keys(request).authenticate(
        request.headers, method=request.method, target=_request_target(request), body=body
    )
    wait = limits["key"].hit(key_id)
    if wait is not None:
        raise RateLimited(
            f"Too many requests for launcher key {key_id}; retry after {wait} s.", wait
        )
    return key_id


async def launcher_session(
    request: Request,
    key_id: Annotated[str, Depends(signed_request)],
    authorization: str | None = Header(default=None, description="Bearer <session token>"),
) -> LauncherSession:
    session = await _launchers(request).authenticate(authorization)
    request.state.launcher_session_id = session.launcher_session_id
    return session


SignedDep = Annotated[str, Depends(signed_request)]
SessionDep = Annotated[LauncherSession, Depends(launcher_session)]


def parse_body(model: type[ModelT], raw: bytes, *, allow_empty: bool = False) -> ModelT:
    """Parse a JSON object body into `model`; raise BadRequest naming the invalid field."""
    if not raw.strip():
        if allow_empty:
            return model.model_validate({})
        raise BadRequest("The request body is missing; send a JSON object.")
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise BadRequest(
            describe_validation_error(RequestValidationError(error.errors()))
        ) from None


def _body_schema(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    schema = {"content": {"application/json": {"schema": model.model_json_schema()}}}
    return {"requestBody": {**schema, "required": required}}


@router.post(
    "/session/start",
    summary="Start a launcher session for a PC in a PC cafe",
    description="Checks the client's external IP with the PC cafe partner." + SIGNATURE_NOTE,
    response_model=Envelope[StartData],
    responses=error_responses(400, 401, 403, 429, 500, 503),
    openapi_extra=_body_schema(StartRequest),
)
async def start(request: Request, key_id: SignedDep) -> JSONResponse:
    body = parse_body(StartRequest, await request.body())
    started = await _launchers(request).start(
        pc_id=body.pc_id,
        external_ip=client_ip(request),
        internal_ip=body.internal_ip,
        hardware=body.hardware,
        launcher_version=body.launcher_version,
    )
    session = started.session
    return ok(
        request,
        {
            "launcher_session_id": session.launcher_session_id,
            "launcher_session_token": started.token,
            "pc_cafe": {"id": session.cafe_id, "name": session.cafe_name},
            "games": [
                {
                    "game_id": game.game_id,
                    "name": game.name,
                    "roblox_place_id": game.roblox_place_id,
                }
                for game in started.games
            ],
            "heartbeat_interval_sec": get_runtime(request).settings.launcher_heartbeat_sec,
        },
    )


@router.post(
    "/ott",
    summary="Issue a one-time token to launch a game",
    description="The token is valid once, for 60 s by default." + SIGNATURE_NOTE,
    response_model=Envelope[OttData],
    responses=error_responses(400, 401, 404, 410, 429, 500, 503),
    openapi_extra=_body_schema(OttRequest),
)
async def issue_ott(request: Request, session: SessionDep) -> JSONResponse:
    body = parse_body(OttRequest, await request.body())
    grant = await _launchers(request).issue_ott(session, body.game_id)
    return ok(
        request,
        {
            "ott": grant.ott,
            "launch_data": ids.launch_data_for(grant.ott),
            "expires_in": (grant.expires_at - grant.issued_at) // 1000,
        },
    )


@router.patch(
    "/session/heartbeat",
    summary="Keep a launcher session alive",
    description="The body may be empty or a JSON object." + SIGNATURE_NOTE,
    response_model=Envelope[HeartbeatData],
    responses=error_responses(400, 401, 410, 429, 500, 503),
    openapi_extra=_body_schema(EmptyRequest, required=False),
)
async def heartbeat(request: Request, session: SessionDep) -> JSONResponse:
    parse_body(EmptyRequest, await request.body(), allow_empty=True)
    next_heartbeat_in = await _launchers(request).heartbeat(session)
    return ok(request, {"next_heartbeat_in": next_heartbeat_in})


@router.delete(
    "/session/end",
    summary="End a launcher session and the game sessions on its PC",
    description="Live game sessions end with reason LAUNCHER_CLOSED." + SIGNATURE_NOTE,
    response_model=Envelope[EndData],
    responses=error_responses(400, 401, 410, 429, 500, 503),
    openapi_extra=_body_schema(EmptyRequest, required=False),
)
async def end(request: Request, session: SessionDep) -> JSONResponse:
    parse_body(EmptyRequest, await request.body(), allow_empty=True)
    ended = await _launchers(request).end(session)
    return ok(request, {"result": "SUCCESS", "ended_game_session_ids": ended})
