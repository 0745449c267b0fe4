"""`LiveStore` on Redis (redis-py asyncio), standalone or Cluster.

Key layout, for a prefix P (setting `redis_prefix`) and N shards:

    P:ott:<ott>                 OTT grant as JSON, expiring at the grant's expiry
    P:nonce:<key id>:<nonce>    signature nonce, expiring at the nonce's expiry
    P:{sK}:gs:<session id>      live session hash (fields in `scripts`)
    P:{sK}:dl                   deadline index of shard K (sorted set, score = due time)
    P:{sK}:hb                   heartbeats of shard K waiting for the flush (score = time)
    P:{sK}:la:<launcher id>     launcher liveness hash (a last seen, d deadline, l lease)
    P:{sK}:ld                   launcher deadline index of shard K

A session or launcher id belongs to shard K = crc32(id) mod N. The `{sK}` hash tag puts every
key of a shard in one Cluster hash slot, so each multi-key script touches one slot, and the
sweeps visit every shard. All processes sharing a prefix must use the same N.

Expiry times are absolute in the caller's clock. The store turns them into relative TTLs with
its own clock, so Redis evicts keys at the right moment even when the Redis server's clock and
the caller's differ. Values that decide an answer (OTT and nonce expiry) are also compared with the
caller's `now`, so an answer never depends on when Redis evicts a key.
"""

from __future__ import annotations

import asyncio
import functools
import json
import zlib
from collections.abc import Callable
from typing import Any, Literal

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster

from playwave.clock import Clock, Millis, SystemClock
from playwave.domain.lifecycle import EndReason, SessionState, Timers
from playwave.domain.live import LiveSession, Touch, TouchStatus
from playwave.stores.base import OttGrant, StoreUnavailable
from playwave.stores.redis import scripts

log = structlog.get_logger("playwave.stores.redis")

DEFAULT_PREFIX = "pw"
# Connections per process to a standalone Redis.
MAX_CONNECTIONS = 100
DEFAULT_SHARDS = 16
# How long a launcher's liveness key outlives its deadline, so that a sweeper that was down for
# a while still finds the last-seen time. `forget_launcher` deletes the key sooner.
LAUNCHER_KEY_MARGIN_MS = 86_400_000

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.ClusterError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
)

# Session hash fields: game, user, pc, started at, last heartbeat, grace started at, state,
# deadline, end reason, lease until. Short names keep a million live hashes small.
_SESSION_FIELDS = ("g", "u", "p", "s", "h", "x", "t", "d", "r", "l")

RedisClient = Redis | RedisCluster


def _translate_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn connection failures and timeouts raised by `func` into `StoreUnavailable`."""

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await func(*args, **kwargs)
        except _UNAVAILABLE_ERRORS as error:
            raise StoreUnavailable(f"redis unavailable: {type(error).__name__}") from error

    return wrapper


async def detect_cluster(url: str, *, timeout_sec: float = 5.0) -> bool:
    """Tell whether the server at `url` runs in cluster mode (`INFO cluster`)."""
    probe = Redis.from_url(
        url, socket_timeout=timeout_sec, socket_connect_timeout=timeout_sec, decode_responses=True
    )
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return str(info.get("cluster_enabled", 0)) == "1"


class RedisLiveStore:
    """`LiveStore` on Redis; every multi-step change is one Lua script.

    Redis expires OTTs, nonces and tombstones itself, so `purge` does nothing.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        clock: Clock | None = None,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"redis key prefix {prefix!r} must not contain '{{' or '}}'")
        if shards < 1:
            raise ValueError(f"shard count must be at least 1, not {shards}")
        self.client = client
        self.prefix = prefix
        self.shards = shards
        self.clock = clock or SystemClock()
        self.is_cluster = isinstance(client, RedisCluster)
        self._next_due_shard = 0
        self._next_heartbeat_shard = 0

        self._touch = client.register_script(scripts.TOUCH)
        self._put_session = client.register_script(scripts.PUT_SESSION)
        self._start_grace = client.register_script(scripts.START_GRACE)
        self._mark_ending = client.register_script(scripts.MARK_ENDING)
        self._mark_ended = client.register_script(scripts.MARK_ENDED)
        self._lease_due = client.register_script(scripts.LEASE_DUE)
        self._touch_launcher = client.register_script(scripts.TOUCH_LAUNCHER)
        self._forget_launcher = client.register_script(scripts.FORGET_LAUNCHER)
        self._remember_nonce = client.register_script(scripts.REMEMBER_NONCE)

    @classmethod
    async def connect(
        cls,
        url: str,
        cluster: Literal["auto", "yes", "no"] = "auto",
        *,
        prefix: str = DEFAULT_PREFIX,
        shards: int = DEFAULT_SHARDS,
        clock: Clock | None = None,
        timeout_sec: float = 2.0,
    ) -> RedisLiveStore:
        """Connect to `url` with the Cluster client when `cluster` is "yes", or "auto" and the
        server reports cluster mode.

        Raises `StoreUnavailable` when `cluster` is "auto" and the server cannot be reached.
        """
        if cluster == "auto":
            try:
                use_cluster = await detect_cluster(url, timeout_sec=timeout_sec)
            except _UNAVAILABLE_ERRORS as error:
                raise StoreUnavailable(
                    f"redis unavailable: {type(error).__name__}; cannot tell whether it is a "
                    "cluster (set PLAYWAVE_REDIS_CLUSTER to yes or no to skip the check)"
                ) from error
        else:
            use_cluster = cluster == "yes"

        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": timeout_sec,
            "socket_connect_timeout": timeout_sec,
        }
        client: RedisClient
        if use_cluster:
            client = RedisCluster.from_url(url, **options)
        else:
            # A full pool makes a command wait for a free connection, up to the socket
            # timeout, instead of failing at once as redis-py's default pool does.
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=timeout_sec,
                health_check_interval=30,
                **options,
            )
            client = Redis.from_pool(pool)
        log.info("redis_connected", cluster=use_cluster, prefix=prefix, shards=shards)
        return cls(client, prefix=prefix, shards=shards, clock=clock)

    # Keys.

    def shard_of(self, item_id: str) -> int:
        return zlib.crc32(item_id.encode()) % self.shards

    def _tag(self, shard: int) -> str:
        return f"{self.prefix}:{{s{shard}}}"

    def session_key(self, game_session_id: str) -> str:
        return f"{self._tag(self.shard_of(game_session_id))}:gs:{game_session_id}"

    def _session_keys(self, game_session_id: str) -> tuple[str, str, str]:
        tag = self._tag(self.shard_of(game_session_id))
        return f"{tag}:gs:{game_session_id}", f"{tag}:dl", f"{tag}:hb"

    def _launcher_keys(self, launcher_session_id: str) -> tuple[str, str]:
        tag = self._tag(self.shard_of(launcher_session_id))
        return f"{tag}:la:{launcher_session_id}", f"{tag}:ld"

    def _ott_key(self, ott: str) -> str:
        return f"{self.prefix}:ott:{ott}"

    def _nonce_key(self, key_id: str, nonce: str) -> str:
        return f"{self.prefix}:nonce:{key_id}:{nonce}"

    def _ttl_until(self, at: Millis, now: Millis | None = None) -> int:
        """Return the milliseconds from `now` (default: the store's clock) to `at`, at least 1."""
        return max(1, at - (self.clock.now() if now is None else now))

    # Connection.

    @_translate_errors
    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()

    # One-time tokens.

    @_translate_errors
    async def put_ott(self, grant: OttGrant) -> None:
        value = json.dumps(
            {
                "g": grant.game_id,
                "p": grant.pc_id,
                "c": grant.cafe_id,
                "l": grant.launcher_session_id,
                "i": grant.issued_at,
                "e": grant.expires_at,
            },
            separators=(",", ":"),
        )
        await self.client.set(self._ott_key(grant.ott), value, px=self._ttl_until(grant.expires_at))

    @_translate_errors
    async def get_ott(self, ott: str, now: Millis) -> OttGrant | None:
        value = await self.client.get(self._ott_key(ott))
        if value is None:
            return None
        fields = json.loads(value)
        if fields["e"] <= now:
            return None
        return OttGrant(
            ott=ott,
            game_id=fields["g"],
            pc_id=fields["p"],
            cafe_id=fields["c"],
            launcher_session_id=fields["l"],
            issued_at=fields["i"],
            expires_at=fields["e"],
        )

    @_translate_errors
    async def delete_ott(self, ott: str) -> None:
        await self.client.delete(self._ott_key(ott))

    # Live sessions.

    @_translate_errors
    async def put_session(self, session: LiveSession) -> None:
        key, index, _ = self._session_keys(session.game_session_id)
        pairs: list[str | int] = [
            "g",
            session.game_id,
            "u",
            session.provider_user_id,
            "p",
            session.pc_id,
            "s",
            session.started_at,
            "h",
            session.last_heartbeat_at,
            "t",
            session.state.value,
            "d",
            session.deadline,
        ]
        if session.grace_started_at is not None:
            pairs += ["x", session.grace_started_at]
        if session.end_reason is not None:
            pairs += ["r", session.end_reason.value]
        await self._put_session(
            keys=[key, index],
            args=[session.game_session_id, session.state.value, session.deadline, *pairs],
        )

    @_translate_errors
    async def get_session(self, game_session_id: str) -> LiveSession | None:
        key, _, _ = self._session_keys(game_session_id)
        values = await self.client.hmget(key, list(_SESSION_FIELDS))
        return _live_session(game_session_id, values)

    @_translate_errors
    async def touch(
        self,
        game_session_id: str,
        game_id: str,
        provider_user_id: str,
        now: Millis,
        timers: Timers,
    ) -> Touch:
        reply = await self._touch(
            keys=list(self._session_keys(game_session_id)),
            args=[
                game_session_id,
                game_id,
                provider_user_id,
                now,
                timers.session_ttl_ms,
                timers.charge_grace_ms,
            ],
        )
        status = TouchStatus(reply[0])
        return Touch(status, _live_session(game_session_id, reply[1:]))

    @_translate_errors
    async def start_grace(
        self, game_session_id: str, grace_started_at: Millis, timers: Timers
    ) -> None:
        key, index, _ = self._session_keys(game_session_id)
        await self._start_grace(
            keys=[key, index],
            args=[game_session_id, grace_started_at, timers.session_ttl_ms, timers.charge_grace_ms],
        )

    @_translate_errors
    async def mark_ending(self, game_session_id: str, reason: EndReason, retry_at: Millis) -> None:
        key, index, _ = self._session_keys(game_session_id)
        await self._mark_ending(keys=[key, index], args=[game_session_id, reason.value, retry_at])

    @_translate_errors
    async def mark_ended(self, game_session_id: str, reason: EndReason, keep_until: Millis) -> None:
        await self._mark_ended(
            keys=list(self._session_keys(game_session_id)),
            args=[game_session_id, reason.value, self._ttl_until(keep_until)],
        )

    @_translate_errors
    async def due_sessions(self, now: Millis, limit: int, lease_ms: int) -> list[str]:
        start = self._next_due_shard
        self._next_due_shard = (start + 1) % self.shards
        return await self._lease_due_in_shards(start, "dl", "gs", now, limit, lease_ms)

    async def _lease_due_in_shards(
        self, start: int, index_name: str, hash_name: str, now: Millis, limit: int, lease_ms: int
    ) -> list[str]:
        """Lease due ids shard by shard, starting at `start` so that no shard waits forever."""
        leased: list[str] = []
        for step in range(self.shards):
            if len(leased) >= limit:
                break
            tag = self._tag((start + step) % self.shards)
            ids = await self._lease_due(
                keys=[f"{tag}:{index_name}"],
                args=[now, limit - len(leased), lease_ms, f"{tag}:{hash_name}:"],
            )
            leased.extend(ids)
        return leased

    @_translate_errors
    async def take_heartbeats(self, limit: int) -> list[tuple[str, Millis]]:
        start = self._next_heartbeat_shard
        self._next_heartbeat_shard = (start + 1) % self.shards
        beats: list[tuple[str, Millis]] = []
        for step in range(self.shards):
            if len(beats) >= limit:
                break
            queue = f"{self._tag((start + step) % self.shards)}:hb"
            popped = await self.client.zpopmin(queue, limit - len(beats))
            beats.extend((member, int(score)) for member, score in popped)
        return beats

    # Launcher signatures and liveness.

    @_translate_errors
    async def remember_nonce(
        self, key_id: str, nonce: str, expires_at: Millis, now: Millis
    ) -> bool:
        accepted = await self._remember_nonce(
            keys=[self._nonce_key(key_id, nonce)],
            args=[expires_at, now, self._ttl_until(expires_at, now)],
        )
        return accepted == 1

    @_translate_errors
    async def touch_launcher(self, launcher_session_id: str, at: Millis, deadline: Millis) -> None:
        key, index = self._launcher_keys(launcher_session_id)
        ttl_ms = self._ttl_until(deadline) + LAUNCHER_KEY_MARGIN_MS
        await self._touch_launcher(
            keys=[key, index], args=[launcher_session_id, at, deadline, ttl_ms]
        )

    @_translate_errors
    async def launcher_last_seen(self, launcher_session_id: str) -> Millis | None:
        key, _ = self._launcher_keys(launcher_session_id)
        value = await self.client.hget(key, "a")
        return int(value) if value is not None else None

    @_translate_errors
    async def forget_launcher(self, launcher_session_id: str) -> None:
        key, index = self._launcher_keys(launcher_session_id)
        await self._forget_launcher(keys=[key, index], args=[launcher_session_id])

    @_translate_errors
    async def due_launchers(self, now: Millis, limit: int, lease_ms: int) -> list[str]:
        start = self._next_due_shard
        return await self._lease_due_in_shards(start, "ld", "la", now, limit, lease_ms)

    async def purge(self, now: Millis) -> int:
        return 0


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _live_session(game_session_id: str, values: list[Any]) -> LiveSession | None:
    """Build a `LiveSession` from hash values in `_SESSION_FIELDS` order; None if absent."""
    if not values or values[0] is None:
        return None
    fields = dict(zip(_SESSION_FIELDS, values, strict=False))
    reason = fields.get("r")
    return LiveSession(
        game_session_id=game_session_id,
        game_id=fields["g"],
        provider_user_id=fields["u"],
        pc_id=fields["p"],
        started_at=int(fields["s"]),
        last_heartbeat_at=int(fields["h"]),
        grace_started_at=_int_or_none(fields.get("x")),
        state=SessionState(fields["t"]),
        deadline=int(fields["d"]),
        end_reason=EndReason(reason) if reason else None,
    )
