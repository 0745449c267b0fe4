"""API keys of game servers: issued once, stored as a keyed hash, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from playwave import ids
from playwave.clock import Clock
from playwave.services.cache import LookupCache
from playwave.services.errors import InvalidApiKey
from playwave.stores.base import ApiKey, Game, RecordStore

ENVIRONMENTS = ("dev", "qa", "live")


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    key_id: str
    environment: str
    game: Game

    @property
    def game_id(self) -> str:
        return self.game.game_id


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    api_key: str
    game_id: str
    environment: str


def hash_secret(secret_key: bytes, purpose: str, value: str) -> str:
    """Return the keyed hash under which a secret is stored (HMAC-SHA256, hex)."""
    return hmac.new(secret_key, f"{purpose}\n{value}".encode(), hashlib.sha256).hexdigest()


class ApiKeys:
    """Issues, revokes and authenticates API keys.

    A lookup hashes the presented key with the server secret and finds the row by that digest,
    so no stored secret is ever compared byte by byte. Answers are cached per process for
    `cache_seconds`, which bounds how long a revoked key or a deactivated game keeps working;
    an expiring entry under load costs one records lookup, not one per request in flight.
    """

    def __init__(
        self, records: RecordStore, clock: Clock, secret_key: bytes, *, cache_seconds: float = 2.0
    ) -> None:
        self.records = records
        self.clock = clock
        self.secret_key = secret_key
        self._cache: LookupCache[str, AuthenticatedKey | None] = LookupCache(
            self._lookup, cache_seconds
        )

    async def issue(self, game_id: str, environment: str) -> IssuedKey:
        if environment not in ENVIRONMENTS:
            raise ValueError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        game = await self.records.get_game(game_id)
        if game is None or not game.active:
            raise LookupError(f"game {game_id} not found or inactive")

        key_id = ids.new_key_id("key")
        api_key = f"pw_{environment}_{secrets.token_urlsafe(32)}"
        await self.records.create_api_key(
            ApiKey(
                key_id=key_id,
                game_id=game_id,
                environment=environment,
                key_hash=hash_secret(self.secret_key, "api-key", api_key),
                created_at=self.clock.now(),
            )
        )
        return IssuedKey(key_id=key_id, api_key=api_key, game_id=game_id, environment=environment)

    async def revoke(self, key_id: str) -> bool:
        revoked = await self.records.revoke_api_key(key_id, self.clock.now())
        self._cache.clear()
        return revoked

    async def authenticate(self, api_key: str | None) -> AuthenticatedKey:
        if not api_key:
            raise InvalidApiKey("The X-Api-Key header is missing.")
        if len(api_key) > 200:
            raise InvalidApiKey("The X-Api-Key header is not a valid API key.")

        digest = hash_secret(self.secret_key, "api-key", api_key)
        found = await self._cache.get(digest)
        if found is None:
            raise InvalidApiKey("The API key is unknown, revoked, or its game is inactive.")
        return found

    async def _lookup(self, digest: str) -> AuthenticatedKey | None:
        key = await self.records.find_api_key(digest)
        if key is None or key.revoked_at is not None:
            return None
        game = await self.records.get_game(key.game_id)
        if game is None or not game.active:
            return None
        return AuthenticatedKey(key_id=key.key_id, environment=key.environment, game=game)
