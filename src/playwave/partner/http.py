"""The HTTP client of the PC cafe partner, speaking the contract in docs/partner-contract.md.

Each call gets a connect and a read timeout and a bounded number of attempts. Transport errors,
timeouts, 429 and 5xx answers are retried after an exponential backoff with full jitter, and
every attempt carries the same `Idempotency-Key`, so a retry of a call that was applied before
its answer got lost returns the stored answer instead of charging again. What is still failing
after the last attempt raises `PartnerUnavailable`, and the caller's durable queue retries it
later with the same key.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from playwave.partner.base import (
    BillingStarted,
    BillingState,
    Cafe,
    NotChargeable,
    PartnerRejected,
    PartnerUnavailable,
    UsageReported,
)

log = structlog.get_logger("playwave.partner.http")

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_BASE = 0.2
DEFAULT_BACKOFF_MAX = 2.0


class HttpPartner:
    """`Partner` over HTTP with httpx.

    `transport` replaces the network layer (an `httpx.MockTransport`, or an
    `httpx.ASGITransport` onto the partner simulator), so tests exercise the real client code.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        headers = {"Accept": "application/json", "User-Agent": "playwave-server"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )

    @property
    def max_call_seconds(self) -> float:
        """Return the longest one call can take, over all its attempts and backoffs.

        Each attempt may wait for the connect timeout and then for the read timeout once per
        read, so this is an estimate for one read per attempt, which a JSON answer needs.
        """
        attempt = self.connect_timeout + self.read_timeout
        return self.max_attempts * attempt + (self.max_attempts - 1) * self.backoff_max

    async def close(self) -> None:
        await self._client.aclose()

    # The partner interface.

    async def check_ip(self, ip: str) -> Cafe | None:
        body = await self._call("POST", "/v1/cafes/lookup-ip", {"ip": ip})
        cafe = body.get("cafe")
        if cafe is None:
            return None
        if not isinstance(cafe, dict):
            raise PartnerUnavailable(
                "partner response to lookup-ip has a cafe that is not an object"
            )
        return Cafe(cafe_id=_text(cafe, "cafe_id"), name=_text(cafe, "name"))

    async def start_billing(
        self,
        *,
        idempotency_key: str,
        cafe_id: str,
        game_id: str,
        pc_id: str,
        game_session_id: str,
    ) -> BillingStarted:
        body = await self._call(
            "POST",
            "/v1/billings",
            {
                "cafe_id": cafe_id,
                "game_id": game_id,
                "pc_id": pc_id,
                "game_session_id": game_session_id,
            },
            idempotency_key=idempotency_key,
        )
        return BillingStarted(
            billing_id=_text(body, "billing_id"),
            balance=_integer(body, "balance"),
            seconds_left=_integer(body, "seconds_left", optional=True),
            price_per_hour=_integer(body, "price_per_hour", optional=True),
        )

    async def report_usage(
        self, *, idempotency_key: str, billing_id: str, total_seconds: int
    ) -> UsageReported:
        body = await self._call(
            "POST",
            f"/v1/billings/{_segment(billing_id)}/usage",
            {"total_seconds": total_seconds},
            idempotency_key=idempotency_key,
        )
        return _usage(body)

    async def stop_billing(
        self, *, idempotency_key: str, billing_id: str, billable_seconds: int
    ) -> UsageReported:
        body = await self._call(
            "POST",
            f"/v1/billings/{_segment(billing_id)}/stop",
            {"billable_seconds": billable_seconds},
            idempotency_key=idempotency_key,
        )
        return _usage(body)

    async def get_billing(self, billing_id: str) -> BillingState | None:
        try:
            body = await self._call("GET", f"/v1/billings/{_segment(billing_id)}", None)
        except _NotFound:
            return None
        return BillingState(
            billing_id=_text(body, "billing_id"),
            cafe_id=_text(body, "cafe_id"),
            game_session_id=_text(body, "game_session_id"),
            price_per_hour=_integer(body, "price_per_hour"),
            charged_seconds=_integer(body, "charged_seconds"),
            charged_amount=_integer(body, "charged_amount"),
            exhausted=_flag(body, "exhausted"),
            stopped=_flag(body, "stopped"),
        )

    # Transport, retries and error mapping.

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        response = await self._send_with_retries(method, path, body, idempotency_key)
        return _decode(response, path)

    async def _send_with_retries(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> httpx.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        last_error = "no attempt made"
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = await self._client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as error:
                last_error = f"{type(error).__name__}: {error}" if str(error) else repr(error)
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                last_error = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)

            if attempt == self.max_attempts:
                break
            delay = self._backoff(attempt, retry_after)
            log.info(
                "partner_call_retry",
                method=method,
                path=path,
                idempotency_key=idempotency_key,
                attempt=attempt,
                error=last_error,
                delay_sec=round(delay, 3),
            )
            await asyncio.sleep(delay)

        raise PartnerUnavailable(
            f"partner {method} {path} failed after {self.max_attempts} attempts: {last_error}"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Return the full-jitter delay before attempt `attempt + 1`, honouring Retry-After."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


class _NotFound(PartnerRejected):
    """The partner answered 404 for the resource in the path."""


def _decode(response: httpx.Response, path: str) -> dict[str, Any]:
    """Return the JSON object of a 2xx answer, or raise the error the status stands for."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None

    if 200 <= status < 300:
        if not isinstance(body, dict):
            raise PartnerUnavailable(f"partner response to {path} is not a JSON object")
        return body

    code, message = _error_of(body, status)
    detail = f"partner responded to {path} with HTTP {status} {code}: {message}"
    if status == 402 or code == "NOT_CHARGEABLE":
        raise NotChargeable(message)
    if status in (401, 403):
        # A wrong or revoked token is fixed by configuration, not by the call, so the queued
        # call waits and is retried instead of being given up.
        log.error("partner_auth_failed", path=path, status=status, code=code)
        raise PartnerUnavailable(detail)
    if status == 404:
        raise _NotFound(detail)
    raise PartnerRejected(detail)


def _error_of(body: Any, status: int) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "UNKNOWN")), str(error.get("message", ""))
    return "UNKNOWN", f"HTTP {status} without an error object"


def _segment(value: str) -> str:
    """Return `value` quoted as one path segment, so an id can never change the path."""
    return quote(value, safe="")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _usage(body: dict[str, Any]) -> UsageReported:
    return UsageReported(
        balance=_integer(body, "balance"),
        charged_seconds=_integer(body, "charged_seconds"),
        exhausted=_flag(body, "exhausted"),
        seconds_left=_integer(body, "seconds_left", optional=True),
        charged_amount=_integer(body, "charged_amount", optional=True),
    )


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise PartnerUnavailable(f"partner response is missing the string field {name!r}")
    return value


def _integer(body: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PartnerUnavailable(f"partner response field {name!r} is not an integer: {value!r}")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise PartnerUnavailable(f"partner response field {name!r} is not a boolean: {value!r}")
    return value
