"""A launcher that signs its requests the way docs/launcher-signing.md describes."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx

from playwave.clock import ManualClock
from playwave.domain import signing


@dataclass(frozen=True)
class SignedRequest:
    """One signed request, kept whole so a test can send the same bytes again."""

    method: str
    target: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Launcher:
    client: httpx.AsyncClient
    key_id: str
    secret: str
    clock: ManualClock
    token: str | None = None
    launcher_session_id: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def sign(
        self,
        method: str,
        target: str,
        body: dict[str, Any] | bytes | None = None,
        *,
        skew_sec: int = 0,
        nonce: str | None = None,
        with_token: bool = True,
    ) -> SignedRequest:
        if isinstance(body, bytes):
            raw = body
        elif body is None:
            raw = b""
        else:
            raw = json.dumps(body).encode()
        timestamp = str(self.clock.now() // 1000 + skew_sec)
        nonce = nonce or secrets.token_hex(16)
        headers = {
            signing.KEY_ID_HEADER: self.key_id,
            signing.TIMESTAMP_HEADER: timestamp,
            signing.NONCE_HEADER: nonce,
            signing.SIGNATURE_HEADER: signing.sign(
                self.secret, method, target, timestamp, nonce, raw
            ),
            "Content-Type": "application/json",
            **self.extra_headers,
        }
        if with_token and self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return SignedRequest(method, target, raw, headers)

    async def send(self, request: SignedRequest) -> httpx.Response:
        return await self.client.request(
            request.method, request.target, content=request.body, headers=request.headers
        )

    async def call(
        self, method: str, target: str, body: dict[str, Any] | bytes | None = None, **options: Any
    ) -> httpx.Response:
        return await self.send(self.sign(method, target, body, **options))

    async def start(self, pc_id: str = "pc-1", **overrides: Any) -> httpx.Response:
        body = {
            "pc_id": pc_id,
            "internal_ip": "192.168.0.21",
            "hardware": {"cpu": "i5-13400F", "gpu": "RTX 4060", "ram_gb": 16},
            "launcher_version": "1.4.2",
            **overrides,
        }
        response = await self.call("POST", "/v1/launcher/session/start", body)
        if response.status_code == 200:
            data = response.json()["data"]
            self.token = data["launcher_session_token"]
            self.launcher_session_id = data["launcher_session_id"]
        return response

    async def ott(self, game_id: str) -> httpx.Response:
        return await self.call("POST", "/v1/launcher/ott", {"game_id": game_id})

    async def launch_data(self, game_id: str) -> str:
        response = await self.ott(game_id)
        assert response.status_code == 200, response.json()
        return response.json()["data"]["launch_data"]

    async def heartbeat(self) -> httpx.Response:
        return await self.call("PATCH", "/v1/launcher/session/heartbeat", {})

    async def end(self) -> httpx.Response:
        return await self.call("DELETE", "/v1/launcher/session/end", {})
