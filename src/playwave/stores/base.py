"""Store interfaces and the records they exchange.

`RecordStore` holds the durable truth: games, keys, sessions and the partner call queue. Every
state change that must happen exactly once is a conditional write there. `LiveStore` holds what
the hot paths need fast and may lose: OTTs, live session copies with their deadlines, launcher
liveness and signature nonces. Losing the live store costs at most the heartbeats not yet
flushed to the records; it never ends a session twice or charges twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from playwave import ids
from playwave.clock import Millis
from playwave.domain.lifecycle import EndReason, GameSession, SessionEnd, Timers
from playwave.domain.live import LiveSession, Touch


class StoreUnavailable(Exception):
    """A store could not be reached; the request may be retried."""


class OttConsumed(Exception):
    """A session already exists for this OTT."""

    def __init__(self, existing: GameSession) -> None:
        super().__init__(f"OTT already consumed by {existing.game_session_id}")
        self.existing = existing


class PcBusy(Exception):
    """Another live session holds the PC; end it first, then retry."""


@dataclass(frozen=True, slots=True)
class Game:
    game_id: str
    name: str
    rate_per_hour: int
    active: bool
    created_at: Millis
    roblox_place_id: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    game_id: str
    environment: str
    key_hash: str
    created_at: Millis
    revoked_at: Millis | None = None


@dataclass(frozen=True, slots=True)
class LauncherKey:
    key_id: str
    created_at: Millis
    revoked_at: Millis | None = None


@dataclass(frozen=True, slots=True)
class LauncherSession:
    launcher_session_id: str
    pc_id: str
    cafe_id: str
    cafe_name: str
    token_hash: str
    external_ip: str
    internal_ip: str
    launcher_version: str
    hardware: dict[str, Any]
    started_at: Millis
    last_heartbeat_at: Millis
    ended_at: Millis | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True)
class OttGrant:
    """An issued one-time token and what it is bound to."""

    ott: str
    game_id: str
    pc_id: str
    cafe_id: str
    launcher_session_id: str | None
    issued_at: Millis
    expires_at: Millis

    @classmethod
    def issue(
        cls,
        *,
        game_id: str,
        pc_id: str,
        cafe_id: str,
        launcher_session_id: str | None,
        now: Millis,
        ttl_ms: int,
    ) -> OttGrant:
        """Return a new grant with a fresh OTT, valid for `ttl_ms` from `now`."""
        return cls(
            ott=ids.new_ott(),
            game_id=game_id,
            pc_id=pc_id,
            cafe_id=cafe_id,
            launcher_session_id=launcher_session_id,
            issued_at=now,
            expires_at=now + ttl_ms,
        )


@dataclass(frozen=True, slots=True)
class PartnerCall:
    """A partner call that must complete, queued in the same transaction that needs it."""

    idempotency_key: str
    kind: str
    game_session_id: str | None
    payload: dict[str, Any]
    call_id: int | None = None
    attempts: int = 0
    next_attempt_at: Millis = 0
    last_error: str | None = None
    completed_at: Millis | None = None
    result: dict[str, Any] | None = field(default=None)


class RecordStore(Protocol):
    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    # Games and keys.
    async def create_game(self, game: Game) -> None: ...

    async def get_game(self, game_id: str) -> Game | None: ...

    async def list_games(self, *, active_only: bool = False) -> list[Game]: ...

    async def set_game_active(self, game_id: str, active: bool) -> bool: ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...

    async def list_api_keys(self, game_id: str | None = None) -> list[ApiKey]: ...

    async def revoke_api_key(self, key_id: str, at: Millis) -> bool: ...

    async def create_launcher_key(self, key: LauncherKey) -> None: ...

    async def get_launcher_key(self, key_id: str) -> LauncherKey | None: ...

    async def list_launcher_keys(self) -> list[LauncherKey]: ...

    async def revoke_launcher_key(self, key_id: str, at: Millis) -> bool: ...

    # Launcher sessions.
    async def start_launcher_session(self, session: LauncherSession) -> LauncherSession | None:
        """Insert `session`, ending the PC's previous open launcher session; return that one.

        Raises `PcBusy` when a concurrent start for the same PC committed first.
        """
        ...

    async def get_launcher_session(self, launcher_session_id: str) -> LauncherSession | None: ...

    async def find_launcher_session_by_token(self, token_hash: str) -> LauncherSession | None:
        """Return the launcher session (open or ended) whose token has the keyed hash given."""
        ...

    async def open_launcher_session_on_pc(self, pc_id: str) -> LauncherSession | None: ...

    async def touch_launcher_session(self, launcher_session_id: str, at: Millis) -> bool: ...

    async def end_launcher_session(
        self, launcher_session_id: str, reason: str, at: Millis
    ) -> LauncherSession | None:
        """End an open launcher session; return it, or None if it had already ended."""
        ...

    async def stale_launcher_sessions(
        self, seen_before: Millis, limit: int
    ) -> list[LauncherSession]: ...

    # Game sessions.
    async def create_session(self, session: GameSession) -> None:
        """Insert a new live session.

        Raises `OttConsumed` when a session exists for the OTT, and `PcBusy` when another live
        session holds the PC.
        """
        ...

    async def get_session(self, game_session_id: str) -> GameSession | None: ...

    async def get_session_by_ott(self, ott: str) -> GameSession | None: ...

    async def live_session_on_pc(self, pc_id: str) -> GameSession | None: ...

    async def live_sessions_of_launcher(self, launcher_session_id: str) -> list[GameSession]: ...

    async def end_session(
        self,
        game_session_id: str,
        end: SessionEnd,
        client_play_duration_sec: int | None,
        calls: Sequence[PartnerCall],
    ) -> GameSession | None:
        """End a live session and queue `calls` in one transaction.

        Returns the ended record, or None when the session was not live (so that exactly one
        caller ever ends a session).
        """
        ...

    async def mark_exhausted(
        self, game_session_id: str, exhausted_at: Millis, grace_started_at: Millis
    ) -> bool:
        """Move an ACTIVE session to GRACE and return True, or return False if it was not ACTIVE."""
        ...

    async def record_heartbeats(self, beats: Sequence[tuple[str, Millis]]) -> int:
        """Raise the durable last heartbeat of live sessions; never lowers one."""
        ...

    async def overdue_sessions(self, now: Millis, timers: Timers, limit: int) -> list[GameSession]:
        """Return live sessions whose durable deadline has passed at `now`."""
        ...

    async def live_sessions(self, after_id: str | None, limit: int) -> list[GameSession]: ...

    async def count_live_sessions(self) -> int: ...

    # Partner call queue.
    async def enqueue_partner_calls(self, calls: Sequence[PartnerCall]) -> None: ...

    async def claim_partner_calls(
        self, now: Millis, lease_ms: int, limit: int
    ) -> list[PartnerCall]:
        """Lease due calls to this worker; a lease that lapses makes the call due again."""
        ...

    async def complete_partner_call(
        self, call_id: int, at: Millis, result: dict[str, Any]
    ) -> bool: ...

    async def retry_partner_call(
        self, call_id: int, next_attempt_at: Millis, error: str
    ) -> None: ...

    async def count_pending_partner_calls(self) -> int: ...

    async def oldest_due_partner_call(self, now: Millis) -> Millis | None:
        """Return the earliest due time among pending calls due at `now`, or None if none is due."""
        ...

    async def list_sessions(self, after_id: str | None, limit: int) -> list[GameSession]:
        """Return sessions in any state, ordered by id, for paging through all of them."""
        ...

    async def partner_calls_of(self, game_session_ids: Sequence[str]) -> list[PartnerCall]:
        """Return the queued partner calls of these sessions, completed or not, by call id."""
        ...

    # Usage reports.
    async def due_usage_reports(
        self, now: Millis, interval_ms: int, limit: int
    ) -> list[GameSession]:
        """Return up to `limit` ACTIVE sessions whose next usage report is due, oldest due first.

        A session without a scheduled report is due `interval_ms` after its start. Oldest first
        keeps a backlog fair, because every session is then late by about the same time and
        none waits until the backlog is gone.
        """
        ...

    async def queue_usage_report(
        self,
        game_session_id: str,
        *,
        reported_sec: int,
        total_sec: int,
        next_report_at: Millis,
        call: PartnerCall | None,
        at: Millis,
    ) -> bool:
        """Move an ACTIVE session's reported seconds to `total_sec` and queue `call` with it.

        One transaction, conditional on the session still being ACTIVE with `reported_sec`
        reported, so of two workers reporting the same session only one queues a call. Returns
        whether it applied.
        """
        ...

    async def advance_usage_report(self, game_session_id: str, at: Millis) -> bool:
        """Bring an ACTIVE session's next usage report forward to `at`; never delays it."""
        ...


class LiveStore(Protocol):
    async def ping(self) -> None: ...

    async def close(self) -> None: ...

    async def put_ott(self, grant: OttGrant) -> None: ...

    async def get_ott(self, ott: str, now: Millis) -> OttGrant | None:
        """Return the grant while it has not expired."""
        ...

    async def delete_ott(self, ott: str) -> None: ...

    async def put_session(self, session: LiveSession) -> None: ...

    async def get_session(self, game_session_id: str) -> LiveSession | None: ...

    async def touch(
        self,
        game_session_id: str,
        game_id: str,
        provider_user_id: str,
        now: Millis,
        timers: Timers,
    ) -> Touch:
        """Apply `playwave.domain.live.touch` atomically and queue the heartbeat for flushing."""
        ...

    async def start_grace(
        self, game_session_id: str, grace_started_at: Millis, timers: Timers
    ) -> None:
        """Move an ACTIVE session to GRACE from `grace_started_at`. A repeat changes nothing."""
        ...

    async def mark_ending(self, game_session_id: str, reason: EndReason, retry_at: Millis) -> None:
        """Mark a session as being ended for `reason`.

        The session comes due again at `retry_at`, so a sweeper finishes an end that stalled.
        """
        ...

    async def mark_ended(self, game_session_id: str, reason: EndReason, keep_until: Millis) -> None:
        """Replace the live copy with a tombstone kept until `keep_until`."""
        ...

    async def due_sessions(self, now: Millis, limit: int, lease_ms: int) -> list[str]:
        """Return ids whose deadline passed, leasing them so other sweepers skip them a while."""
        ...

    async def take_heartbeats(self, limit: int) -> list[tuple[str, Millis]]:
        """Remove and return heartbeats not yet flushed to the records."""
        ...

    async def remember_nonce(
        self, key_id: str, nonce: str, expires_at: Millis, now: Millis
    ) -> bool:
        """Store a signature nonce; return False if it was already seen and has not expired."""
        ...

    async def touch_launcher(
        self, launcher_session_id: str, at: Millis, deadline: Millis
    ) -> None: ...

    async def launcher_last_seen(self, launcher_session_id: str) -> Millis | None: ...

    async def forget_launcher(self, launcher_session_id: str) -> None: ...

    async def due_launchers(self, now: Millis, limit: int, lease_ms: int) -> list[str]: ...

    async def purge(self, now: Millis) -> int:
        """Delete expired OTTs, nonces and tombstones; a no-op where the store expires keys."""
        ...
