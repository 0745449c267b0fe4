"""Test helpers: a game server that speaks the published API, and OTT minting."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from playwave.partner.sandbox import DEMO_CAFE_ID
from playwave.runtime import Runtime
from playwave.stores.base import OttGrant


async def mint_ott(
    runtime: Runtime, game_id: str, pc_id: str = "pc-1", launcher_session_id: str | None = None
) -> OttGrant:
    grant = OttGrant.issue(
        game_id=game_id,
        pc_id=pc_id,
        cafe_id=DEMO_CAFE_ID,
        launcher_session_id=launcher_session_id,
        now=runtime.clock.now(),
        ttl_ms=runtime.settings.timers.ott_ttl_ms,
    )
    await runtime.live.put_ott(grant)
    return grant


@dataclass
class GameServer:
    """Calls the game server API the way the published Luau samples do."""

    client: httpx.AsyncClient
    api_key: str
    game_id: str

    def _headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.api_key, "Content-Type": "application/json"}

    async def call(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.request(
            method, f"/v1/game/session/{path}", content=json.dumps(body), headers=self._headers()
        )

    async def verify(self, ott: str, user: str = "123456789") -> httpx.Response:
        return await self.call("POST", "verify", {"ott": ott, "provider_user_id": user})

    async def heartbeat(self, game_session_id: str, user: str = "123456789") -> httpx.Response:
        return await self.call(
            "PATCH", "heartbeat", {"game_session_id": game_session_id, "provider_user_id": user}
        )

    async def check(self, game_session_id: str, user: str = "123456789") -> httpx.Response:
        return await self.call(
            "POST", "check", {"game_session_id": game_session_id, "provider_user_id": user}
        )

    async def end(
        self, game_session_id: str, play_duration_sec: int | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"game_session_id": game_session_id}
        if play_duration_sec is not None:
            body["play_duration_sec"] = play_duration_sec
        return await self.call("DELETE", "end", body)

    async def start(self, grant: OttGrant, user: str = "123456789") -> str:
        response = await self.verify(grant.ott, user)
        data = response.json()["data"]
        assert data["is_valid"] is True, data
        return data["game_session_id"]
