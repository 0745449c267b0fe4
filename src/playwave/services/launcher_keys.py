"""Launcher HMAC keys: issued, revoked, listed, and used to check signed launcher requests.

No launcher secret is stored. Each key's secret is derived from the server secret and the key
id (`hash_secret(server_secret, "launcher-key", key_id)`), so it can be printed once at issue
and recomputed for every request. Several keys may be active at once, for rotation.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from playwave import ids
from playwave.clock import Clock
from playwave.domain import signing
from playwave.domain.signing import SignatureFailure
from playwave.services.cache import LookupCache
from playwave.services.errors import ServiceError
from playwave.services.keys import hash_secret
from playwave.stores.base import LauncherKey, LiveStore, RecordStore

log = structlog.get_logger("playwave.launcher_keys")

KEY_ID_PREFIX = "lk"


class SignatureMissing(ServiceError):
    code = "SIGNATURE_MISSING"
    status = 401


class UnknownKey(ServiceError):
    code = "UNKNOWN_KEY"
    status = 401


class InvalidSignature(ServiceError):
    code = "INVALID_SIGNATURE"
    status = 401


class TimestampExpired(ServiceError):
    code = "TIMESTAMP_EXPIRED"
    status = 401


class NonceReused(ServiceError):
    code = "NONCE_REUSED"
    status = 401


_FAILURE_ERRORS: dict[SignatureFailure, type[ServiceError]] = {
    SignatureFailure.MISSING_HEADER: SignatureMissing,
    SignatureFailure.UNKNOWN_KEY: UnknownKey,
    SignatureFailure.BAD_NONCE: InvalidSignature,
    SignatureFailure.BAD_TIMESTAMP: InvalidSignature,
    SignatureFailure.BAD_SIGNATURE: InvalidSignature,
    SignatureFailure.STALE_TIMESTAMP: TimestampExpired,
    SignatureFailure.FUTURE_TIMESTAMP: TimestampExpired,
}


class LauncherKeys:
    """Issues and revokes launcher keys and checks the signature of each launcher request.

    Keys are cached per process for `cache_seconds`, like API keys: a revoked key stops
    working within that time in every process, and the process that revoked it at once.
    """

    def __init__(
        self,
        records: RecordStore,
        live: LiveStore,
        clock: Clock,
        server_secret: bytes,
        *,
        cache_seconds: float = 2.0,
    ) -> None:
        self.records = records
        self.live = live
        self.clock = clock
        self.server_secret = server_secret
        self._keys: LookupCache[str, LauncherKey | None] = LookupCache(
            records.get_launcher_key, cache_seconds
        )

    def secret_for(self, key_id: str) -> str:
        """Return the HMAC secret of launcher key `key_id` (64 hex characters)."""
        return hash_secret(self.server_secret, "launcher-key", key_id)

    async def issue(self) -> tuple[LauncherKey, str]:
        """Create a launcher key and return it with its secret, which is shown only this once."""
        key = LauncherKey(key_id=ids.new_key_id(KEY_ID_PREFIX), created_at=self.clock.now())
        await self.records.create_launcher_key(key)
        log.info("launcher_key_created", key_id=key.key_id)
        return key, self.secret_for(key.key_id)

    async def revoke(self, key_id: str) -> bool:
        revoked = await self.records.revoke_launcher_key(key_id, self.clock.now())
        self._keys.clear()
        if revoked:
            log.info("launcher_key_revoked", key_id=key_id)
        return revoked

    async def list(self) -> list[LauncherKey]:
        return await self.records.list_launcher_keys()

    async def authenticate(
        self, headers: Mapping[str, str], *, method: str, target: str, body: bytes
    ) -> str:
        """Check a launcher request's signature and nonce; return the key id that signed it.

        The nonce is remembered only after the signature checks out, so unsigned traffic cannot
        use up a launcher's nonces.
        """
        now = self.clock.now()
        key_id = signing.key_id_of(headers)
        secret = None
        if key_id is not None:
            key = await self._keys.get(key_id)
            if key is not None and key.revoked_at is None:
                secret = self.secret_for(key_id)

        check = signing.verify(secret, headers, method=method, target=target, body=body, now=now)
        if check.failure is not None:
            log.info("launcher_signature_rejected", key_id=key_id, failure=check.failure.value)
            raise _FAILURE_ERRORS[check.failure](check.message)

        assert check.key_id is not None and check.nonce is not None
        assert check.timestamp is not None
        fresh = await self.live.remember_nonce(
            check.key_id, check.nonce, signing.nonce_expiry(check.timestamp, now), now
        )
        if not fresh:
            log.info("launcher_nonce_reused", key_id=check.key_id)
            raise NonceReused(
                f"{signing.NONCE_HEADER} was already used in the last "
                f"{signing.NONCE_TTL_MS // 1000} s; sign each request with a new nonce."
            )
        return check.key_id
