"""The partner simulator: the partner contract served over HTTP on a `SandboxPartner`.

It behaves like the real PC cafe partner (per-cafe G-coin wallets, a price per hour per game,
one application per idempotency key) and can misbehave on purpose: added latency, errors before
a call is applied, timeouts (it sleeps past the client's timeout, then applies the call), errors
after a call was applied and committed, and refusing everything while "down". Faults are set at
start and changed at run time through the admin endpoints, which are never faulted.

The admin endpoints also expose what was charged (`GET /admin/state`), so tests can prove that
no idempotency key was applied twice: `applications` counts, per key, the charges committed by
this process, and the sums over applied keys must equal the billing sessions' totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from playwave.partner.base import NotChargeable, PartnerRejected, PartnerUnavailable
from playwave.partner.sandbox import DEFAULT_PRICE_PER_HOUR, SandboxPartner
from playwave.partner.sandbox_tables import sandbox_applied, sandbox_billings, sandbox_cafes
from playwave.stores.base import StoreUnavailable
from playwave.stores.sql.engine import create_engine
from playwave.stores.sql.tables import metadata

log = structlog.get_logger("playwave.partner.simulator")

DATABASE_FILE = "partner-sim.sqlite3"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,120}")
# The largest integer a JSON number carries exactly in every common parser.
MAX_INTEGER = 2**53 - 1
MAX_BODY_BYTES = 16_384

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Faults:
    """Injected misbehaviour; the rates are probabilities per partner request, drawn once."""

    latency_ms: int = 0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sec: float = 10.0
    error_after_commit_rate: float = 0.0
    down: bool = False

    def validate(self) -> None:
        rates = (self.error_rate, self.timeout_rate, self.error_after_commit_rate)
        if any(rate < 0 or rate > 1 for rate in rates) or sum(rates) > 1:
            raise ValueError(
                "error_rate, timeout_rate and error_after_commit_rate must each be within 0..1 "
                "and add up to at most 1"
            )
        if self.latency_ms < 0 or self.timeout_sec < 0:
            raise ValueError("latency_ms and timeout_sec must not be negative")


class _BadRequest(Exception):
    pass


class PartnerSimulator:
    """The simulator's state: the sandbox, the faults, the counters and the ASGI app."""

    def __init__(
        self,
        sandbox: SandboxPartner,
        *,
        faults: Faults | None = None,
        token: str | None = None,
        seed: int | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.faults = faults or Faults()
        self.faults.validate()
        self.token = token
        self.requests: Counter[str] = Counter()
        self._rng = random.Random(seed)

    # Partner endpoints.

    async def lookup_ip(self, request: Request) -> Response:
        body = await _json_object(request)
        ip = _string(body, "ip", 64)
        cafe = await self.sandbox.check_ip(ip)
        if cafe is None:
            return JSONResponse({"cafe": None})
        return JSONResponse({"cafe": {"cafe_id": cafe.cafe_id, "name": cafe.name}})

    async def start_billing(self, request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        started = await self.sandbox.start_billing(
            idempotency_key=key,
            cafe_id=_string(body, "cafe_id", 64),
            game_id=_string(body, "game_id", 32),
            pc_id=_string(body, "pc_id", 128),
            game_session_id=_string(body, "game_session_id", 40),
        )
        return JSONResponse(
            {
                "billing_id": started.billing_id,
                "balance": started.balance,
                "seconds_left": started.seconds_left,
                "price_per_hour": started.price_per_hour,
            }
        )

    async def report_usage(self, request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        answer = await self.sandbox.report_usage(
            idempotency_key=key,
            billing_id=request.path_params["billing_id"],
            total_seconds=_non_negative(body, "total_seconds"),
        )
        return JSONResponse(asdict(answer))

    async def stop_billing(self, request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        answer = await self.sandbox.stop_billing(
            idempotency_key=key,
            billing_id=request.path_params["billing_id"],
            billable_seconds=_non_negative(body, "billable_seconds"),
        )
        return JSONResponse(asdict(answer))

    async def get_billing(self, request: Request) -> Response:
        billing_id = request.path_params["billing_id"]
        state = await self.sandbox.get_billing(billing_id)
        if state is None:
            return _error(404, "BILLING_NOT_FOUND", f"Billing {billing_id} does not exist.")
        return JSONResponse(asdict(state))

    # Admin endpoints.

    async def admin_state(self, request: Request) -> Response:
        totals = await self.sandbox.totals()
        applications = self.sandbox.applications
        return JSONResponse(
            {
                "faults": asdict(self.faults),
                "requests": dict(self.requests),
                "applications": dict(applications),
                "max_applications_per_key": max(applications.values(), default=0),
                "keys_applied_more_than_once": sorted(
                    key for key, count in applications.items() if count > 1
                ),
                "prices": {"default": self.sandbox.default_price, "games": self.sandbox.prices},
                **totals,
            }
        )

    async def admin_add_cafe(self, request: Request) -> Response:
        body = await _json_object(request)
        ip = body.get("ip")
        if ip is not None and not isinstance(ip, str):
            raise _BadRequest("Field 'ip' must be a string or null.")
        cafe_id = body.get("cafe_id")
        if cafe_id is not None:
            cafe_id = _string(body, "cafe_id", 64)
        cafe = await self.sandbox.add_cafe(
            name=_string(body, "name", 200),
            ip=ip,
            balance=_non_negative(body, "balance"),
            cafe_id=cafe_id,
        )
        return JSONResponse({"cafe_id": cafe.cafe_id, "name": cafe.name}, status_code=201)

    async def admin_update_cafe(self, request: Request) -> Response:
        cafe_id = request.path_params["cafe_id"]
        body = await _json_object(request)
        found = True
        if "balance" in body:
            found = await self.sandbox.set_balance(cafe_id, _non_negative(body, "balance"))
        if found and "suspended" in body:
            suspended = body["suspended"]
            if not isinstance(suspended, bool):
                raise _BadRequest("Field 'suspended' must be a boolean.")
            found = await self.sandbox.set_suspended(cafe_id, suspended)
        if not found:
            return _error(404, "CAFE_NOT_FOUND", f"Cafe {cafe_id} does not exist.")
        return JSONResponse(
            {"cafe_id": cafe_id, "balance": await self.sandbox.get_balance(cafe_id)}
        )

    async def admin_set_prices(self, request: Request) -> Response:
        body = await _json_object(request)
        if "default" in body:
            self.sandbox.default_price = _non_negative(body, "default")
        games = body.get("games", {})
        if not isinstance(games, dict):
            raise _BadRequest("Field 'games' must be an object of game_id to price per hour.")
        for game_id in games:
            self.sandbox.prices[str(game_id)] = _non_negative(games, game_id)
        return JSONResponse({"default": self.sandbox.default_price, "games": self.sandbox.prices})

    async def admin_get_faults(self, request: Request) -> Response:
        return JSONResponse(asdict(self.faults))

    async def admin_set_faults(self, request: Request) -> Response:
        body = await _json_object(request)
        known = {field.name: field.type for field in fields(Faults)}
        changed = asdict(self.faults)
        for name, value in body.items():
            if name not in known:
                raise _BadRequest(f"Unknown fault {name!r}; known: {', '.join(sorted(known))}.")
            if name == "down":
                if not isinstance(value, bool):
                    raise _BadRequest("Field 'down' must be a boolean.")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise _BadRequest(f"Field {name!r} must be a number.")
            changed[name] = value
        faults = Faults(**changed)
        faults.latency_ms = int(faults.latency_ms)
        try:
            faults.validate()
        except ValueError as error:
            raise _BadRequest(str(error)) from error
        self.faults = faults
        log.info("simulator_faults_changed", **asdict(faults))
        return JSONResponse(asdict(faults))

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    # Wrapping: authentication, faults and error mapping.

    def _partner(self, handler: Handler, *, applies: bool) -> Handler:
        """Wrap a partner endpoint with authentication, fault injection and error mapping."""

        async def endpoint(request: Request) -> Response:
            denied = self._check_token(request)
            if denied is not None:
                return denied
            faults = self.faults
            if faults.down:
                self.requests["down"] += 1
                return _error(503, "SERVICE_UNAVAILABLE", "The partner is down.", retry_after=1)
            if faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)

            draw = self._rng.random()
            if draw < faults.error_rate:
                self.requests["error_before_apply"] += 1
                return _error(500, "INTERNAL_ERROR", "Injected error; nothing was applied.")
            draw -= faults.error_rate
            if draw < faults.timeout_rate:
                # The client has given up by the time this wakes; the call is still applied, as
                # a real partner that was merely slow would do.
                self.requests["timeout"] += 1
                await asyncio.sleep(faults.timeout_sec)
                return await self._handle(handler, request)
            draw -= faults.timeout_rate
            response = await self._handle(handler, request)
            if applies and draw < faults.error_after_commit_rate and response.status_code < 300:
                self.requests["error_after_commit"] += 1
                return _error(500, "INTERNAL_ERROR", "Injected error after the call was applied.")
            self.requests["answered"] += 1
            return response

        return endpoint

    def _admin(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            denied = self._check_token(request)
            if denied is not None:
                return denied
            return await self._handle(handler, request)

        return endpoint

    def _check_token(self, request: Request) -> Response | None:
        if self.token is None:
            return None
        if request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        self.requests["unauthorized"] += 1
        return _error(401, "UNAUTHORIZED", "The bearer token is missing or invalid.")

    async def _handle(self, handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except _BadRequest as error:
            return _error(400, "BAD_REQUEST", str(error))
        except NotChargeable as refusal:
            return _error(402, "NOT_CHARGEABLE", str(refusal))
        except PartnerRejected as error:
            return _error(404, "BILLING_NOT_FOUND", str(error))
        except ValueError as error:
            return _error(400, "BAD_REQUEST", str(error))
        except (PartnerUnavailable, StoreUnavailable) as error:
            log.warning("simulator_store_unavailable", error=str(error))
            return _error(503, "SERVICE_UNAVAILABLE", "The wallet store is unavailable.", 1)

    def routes(self) -> list[Route]:
        partner = self._partner
        admin = self._admin
        return [
            Route("/v1/cafes/lookup-ip", partner(self.lookup_ip, applies=False), methods=["POST"]),
            Route("/v1/billings", partner(self.start_billing, applies=True), methods=["POST"]),
            Route(
                "/v1/billings/{billing_id}/usage",
                partner(self.report_usage, applies=True),
                methods=["POST"],
            ),
            Route(
                "/v1/billings/{billing_id}/stop",
                partner(self.stop_billing, applies=True),
                methods=["POST"],
            ),
            Route(
                "/v1/billings/{billing_id}",
                partner(self.get_billing, applies=False),
                methods=["GET"],
            ),
            Route("/admin/state", admin(self.admin_state), methods=["GET"]),
            Route("/admin/cafes", admin(self.admin_add_cafe), methods=["POST"]),
            Route("/admin/cafes/{cafe_id}", admin(self.admin_update_cafe), methods=["PATCH"]),
            Route("/admin/prices", admin(self.admin_set_prices), methods=["PUT"]),
            Route("/admin/faults", admin(self.admin_get_faults), methods=["GET"]),
            Route("/admin/faults", admin(self.admin_set_faults), methods=["PATCH"]),
            Route("/healthz", self.healthz, methods=["GET"]),
        ]


async def create_sandbox_tables(engine: AsyncEngine) -> None:
    """Create the sandbox partner's tables (and only those) where they do not exist."""
    tables = [sandbox_cafes, sandbox_billings, sandbox_applied]
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: metadata.create_all(sync, tables=tables))


def create_simulator_app(
    *,
    data_dir: Path | None = None,
    engine: AsyncEngine | None = None,
    faults: Faults | None = None,
    token: str | None = None,
    seed: int | None = None,
    price_per_hour: int = DEFAULT_PRICE_PER_HOUR,
    prices: dict[str, int] | None = None,
    demo_cafe: bool = True,
) -> Starlette:
    """Build the simulator's ASGI app on `engine`, or on a SQLite file in `data_dir`.

    With `demo_cafe`, loopback IPs are the sandbox demo cafe, as on the embedded default.
    `app.state.simulator` is the `PartnerSimulator`, for tests that drive it in-process.
    """
    if (data_dir is None) == (engine is None):
        raise ValueError("give exactly one of data_dir and engine")
    owned = engine is None
    if engine is None:
        assert data_dir is not None
        data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(f"sqlite+aiosqlite:///{(data_dir / DATABASE_FILE).resolve()}")

    sandbox = SandboxPartner(
        engine, loopback_cafe=demo_cafe, price_per_hour=price_per_hour, prices=prices
    )
    simulator = PartnerSimulator(sandbox, faults=faults, token=token, seed=seed)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await create_sandbox_tables(engine)
        log.info("simulator_started", faults=asdict(simulator.faults))
        try:
            yield
        finally:
            if owned:
                await engine.dispose()
            log.info("simulator_stopped")

    app = Starlette(routes=simulator.routes(), lifespan=lifespan)
    app.state.simulator = simulator
    return app


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise _BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        body = await request.json()
    except ValueError as error:
        raise _BadRequest("The body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise _BadRequest("The body must be a JSON object.")
    return body


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None or not IDEMPOTENCY_KEY.fullmatch(key):
        raise _BadRequest("Header Idempotency-Key is missing or not 1-120 printable characters.")
    # NOTE: a repeated key returns the stored answer without comparing the request body, so a
    # client that reuses a key for a different request is not detected here.
    return key


def _string(body: dict[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise _BadRequest(f"Field {name!r} must be a string of 1 to {max_length} characters.")
    return value


def _non_negative(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise _BadRequest(f"Field {name!r} must be an integer from 0 to {MAX_INTEGER}.")
    return value
