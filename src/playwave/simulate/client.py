"""HTTP clients of the simulation: a game server (API key) and a launcher (signed requests).

Every call is checked against the published API by `contract.check_response` and counted in
`CallStats`. Each client is bound to one loopback source address, because the server tells
cafes apart by the client's IP. A shared semaphore bounds the requests in flight.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from playwave.domain import signing
from playwave.simulate.clock import wall_ms
from playwave.simulate.contract import Checked, check_response
from playwave.simulate.stats import CallStats

TRANSPORT_ERROR = "TRANSPORT_ERROR"
# Idle connections are kept below the server's keep-alive (75 s), so the server never closes
# one that the client is about to reuse.
KEEPALIVE_SEC = 60.0

# Fixed headers, or a function of the raw body bytes (signed launcher requests).
Headers = dict[str, str] | Callable[[bytes], dict[str, str]]


class NotLoopback(ValueError):
    """The server URL names a host that is not a loopback address."""


def loopback_host(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Return the loopback address of `url`'s host, or raise NotLoopback.

    The simulation sends thousands of requests a second, so it only ever talks to this machine:
    `localhost` and literal loopback addresses are accepted, every other host is rejected.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotLoopback(f"--url {url!r} is not an http:// URL with a host")
    host = parts.hostname
    if host == "localhost":
        return ipaddress.ip_address("127.0.0.1")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise NotLoopback(
            f"--url host {host!r} is not a loopback address; use 127.0.0.1, ::1 or localhost"
        ) from None
    if not address.is_loopback:
        raise NotLoopback(f"--url host {host} is not a loopback address (127.0.0.0/8 or ::1)")
    return address


def can_bind(address: str) -> bool:
    """Return whether this machine can open a TCP socket from `address`."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Answer:
    """One call's outcome with the wall-clock moments it was sent and answered."""

    endpoint: str
    checked: Checked
    sent_ms: int
    received_ms: int

    @property
    def status(self) -> int:
        return self.checked.status

    @property
    def code(self) -> str | None:
        return self.checked.code

    @property
    def data(self) -> dict[str, Any]:
        return self.checked.data or {}

    @property
    def ok(self) -> bool:
        return self.checked.ok


class HttpEndpoint:
    """An httpx client on one source address, sharing the in-flight bound with all others."""

    def __init__(
        self,
        base_url: str,
        local_address: str | None,
        stats: CallStats,
        in_flight: asyncio.Semaphore,
        *,
        max_connections: int = 32,
        timeout_sec: float = 30.0,
    ) -> None:
        transport = httpx.AsyncHTTPTransport(
            local_address=local_address,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_SEC,
            ),
        )
        self.http = httpx.AsyncClient(
            base_url=base_url, transport=transport, timeout=timeout_sec, trust_env=False
        )
        self.stats = stats
        self.in_flight = in_flight

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        endpoint: str,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        headers: Headers,
    ) -> Answer:
        """Send one request and check its answer; transport failures become status 0."""
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        async with self.in_flight:
            sent_ms = wall_ms()
            started = time.monotonic()
            try:
                sent_headers = headers(content) if callable(headers) else headers
                response = await self.http.request(
                    method, path, content=content, headers=sent_headers
                )
            except httpx.HTTPError as error:
                received_ms = wall_ms()
                latency = int((time.monotonic() - started) * 1000)
                checked = Checked(0, TRANSPORT_ERROR, None, ())
                self.stats.record(
                    endpoint, 0, f"{TRANSPORT_ERROR}:{type(error).__name__}", latency, ()
                )
                return Answer(endpoint, checked, sent_ms, received_ms)
            received_ms = wall_ms()
            latency = int((time.monotonic() - started) * 1000)

        try:
            payload = response.json()
        except ValueError:
            payload = None
        lowered = {name.lower(): value for name, value in response.headers.items()}
        checked = check_response(endpoint, response.status_code, lowered, payload, body)
        result = checked.code
        if checked.ok and isinstance(checked.data, dict):
            result = checked.data.get("result") or checked.data.get("reason")
        self.stats.record(endpoint, response.status_code, result, latency, checked.violations)
        return Answer(endpoint, checked, sent_ms, received_ms)


class GameServerApi:
    """A Roblox game server of one game, calling the game server API with its API key."""

    def __init__(self, endpoint: HttpEndpoint, api_key: str) -> None:
        self.endpoint = endpoint
        self.headers = {"X-Api-Key": api_key, "Content-Type": "application/json"}

    async def verify(self, launch_data: str, provider_user_id: str) -> Answer:
        body = {"ott": launch_data, "provider_user_id": provider_user_id}
        return await self.endpoint.call(
            "verify", "POST", "/v1/game/session/verify", body, self.headers
        )

    async def heartbeat(self, game_session_id: str, provider_user_id: str) -> Answer:
        body = {"game_session_id": game_session_id, "provider_user_id": provider_user_id}
        return await self.endpoint.call(
            "heartbeat", "PATCH", "/v1/game/session/heartbeat", body, self.headers
        )

    async def check(self, game_session_id: str, provider_user_id: str) -> Answer:
        body = {"game_session_id": game_session_id, "provider_user_id": provider_user_id}
        return await self.endpoint.call(
            "check", "POST", "/v1/game/session/check", body, self.headers
        )

    async def end(self, game_session_id: str, play_duration_sec: int | None) -> Answer:
        body: dict[str, Any] = {"game_session_id": game_session_id}
        if play_duration_sec is not None:
            body["play_duration_sec"] = play_duration_sec
        return await self.endpoint.call("end", "DELETE", "/v1/game/session/end", body, self.headers)


class LauncherApi:
    """The launcher of one PC: signs every request and carries its launcher session token."""

    def __init__(self, endpoint: HttpEndpoint, key_id: str, secret: str) -> None:
        self.endpoint = endpoint
        self.key_id = key_id
        self.secret = secret
        self.token: str | None = None
        self.launcher_session_id: str | None = None

    def _signed_headers(self, method: str, path: str) -> Callable[[bytes], dict[str, str]]:
        def build(body: bytes) -> dict[str, str]:
            timestamp = str(int(time.time()))
            nonce = secrets.token_urlsafe(18)
            headers = {
                "Content-Type": "application/json",
                signing.KEY_ID_HEADER: self.key_id,
                signing.TIMESTAMP_HEADER: timestamp,
                signing.NONCE_HEADER: nonce,
                signing.SIGNATURE_HEADER: signing.sign(
                    self.secret, method, path, timestamp, nonce, body
                ),
            }
            if self.token is not None:
                headers["Authorization"] = f"Bearer {self.token}"
            return headers

        return build

    async def _call(self, endpoint: str, method: str, path: str, body: dict[str, Any]) -> Answer:
        return await self.endpoint.call(
            endpoint, method, path, body, self._signed_headers(method, path)
        )

    async def start(self, pc_id: str, internal_ip: str) -> Answer:
        self.token = None
        body = {
            "pc_id": pc_id,
            "internal_ip": internal_ip,
            "hardware": {"cpu": "simulated", "gpu": "simulated", "ram_gb": 16},
            "launcher_version": "sim-1.0.0",
        }
        answer = await self._call("launcher_start", "POST", "/v1/launcher/session/start", body)
        if answer.ok:
            self.token = answer.data.get("launcher_session_token")
            self.launcher_session_id = answer.data.get("launcher_session_id")
        return answer

    async def ott(self, game_id: str) -> Answer:
        return await self._call("launcher_ott", "POST", "/v1/launcher/ott", {"game_id": game_id})

    async def heartbeat(self) -> Answer:
        return await self._call("launcher_heartbeat", "PATCH", "/v1/launcher/session/heartbeat", {})

    async def end(self) -> Answer:
        answer = await self._call("launcher_end", "DELETE", "/v1/launcher/session/end", {})
        self.token = None
        return answer
