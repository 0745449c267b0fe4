"""Launcher sessions: start, OTT issue, heartbeat, end, and the end of a launcher gone silent.

One PC has at most one open launcher session. Every end of a launcher session ends the game
sessions started through it first, so no game session outlives its launcher and a PC never has
two billed sessions at once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from playwave import ids
from playwave.clock import Clock, Millis
from playwave.domain.lifecycle import EndReason, GameSession, Timers
from playwave.partner.base import Cafe, Partner, PartnerUnavailable
from playwave.services.errors import ServiceError, ServiceUnavailable
from playwave.services.keys import hash_secret
from playwave.services.sessions import GameSessions
from playwave.stores.base import (
    Game,
    LauncherSession,
    LiveStore,
    OttGrant,
    PcBusy,
    RecordStore,
)

if TYPE_CHECKING:
    from playwave.runtime import Runtime

log = structlog.get_logger("playwave.launcher")

# End reasons of launcher sessions, as stored in the records.
CLOSED = "LAUNCHER_CLOSED"
LOST = "LAUNCHER_LOST"

TOKEN = re.compile(r"[A-Za-z0-9_-]{20,200}")
START_ATTEMPTS = 10


class InvalidToken(ServiceError):
    code = "INVALID_TOKEN"
    status = 401


class NotPcCafe(ServiceError):
    code = "NOT_PC_CAFE"
    status = 403


class GameNotFound(ServiceError):
    code = "GAME_NOT_FOUND"
    status = 404


class LauncherSessionEnded(ServiceError):
    code = "LAUNCHER_SESSION_ENDED"
    status = 410


@dataclass(frozen=True, slots=True)
class StartedLauncher:
    session: LauncherSession
    token: str
    games: list[Game]


class LauncherSessions:
    def __init__(
        self,
        records: RecordStore,
        live: LiveStore,
        partner: Partner,
        clock: Clock,
        timers: Timers,
        sessions: GameSessions,
        server_secret: bytes,
    ) -> None:
        self.records = records
        self.live = live
        self.partner = partner
        self.clock = clock
        self.timers = timers
        self.sessions = sessions
        self.server_secret = server_secret

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> LauncherSessions:
        return cls(
            runtime.records,
            runtime.live,
            runtime.partner,
            runtime.clock,
            runtime.settings.timers,
            runtime.sessions,
            runtime.settings.resolve_secret_key(),
        )

    def _token_hash(self, token: str) -> str:
        return hash_secret(self.server_secret, "launcher-token", token)

    # Start.

    async def start(
        self,
        *,
        pc_id: str,
        external_ip: str,
        internal_ip: str,
        hardware: dict[str, Any],
        launcher_version: str,
    ) -> StartedLauncher:
        """Open a launcher session for a PC in a PC cafe, ending the PC's previous one.

        The previous launcher's game sessions end with LAUNCHER_CLOSED at this moment, before
        the new session exists, so a game launched from the new session is billed from its own
        start and never overlaps the old one.
        """
        cafe = await self._cafe_of(external_ip, pc_id)
        now = self.clock.now()

        previous = await self.records.open_launcher_session_on_pc(pc_id)
        if previous is not None:
            await self._close_game_sessions(previous.launcher_session_id, now)

        token = secrets.token_urlsafe(32)
        session = LauncherSession(
            launcher_session_id=ids.new_launcher_session_id(),
            pc_id=pc_id,
            cafe_id=cafe.cafe_id,
            cafe_name=cafe.name,
            token_hash=self._token_hash(token),
            external_ip=external_ip,
            internal_ip=internal_ip,
            launcher_version=launcher_version,
            hardware=hardware,
            started_at=now,
            last_heartbeat_at=now,
        )
        replaced = await self._insert_replacing(session)

        # A game verified through the old session after the first pass still ends here.
        if replaced is not None:
            await self._close_game_sessions(replaced.launcher_session_id, now)
            await self.live.forget_launcher(replaced.launcher_session_id)
        await self.live.touch_launcher(
            session.launcher_session_id, now, now + self.timers.launcher_timeout_ms
        )

        games = await self.records.list_games(active_only=True)
        log.info(
            "launcher_session_started",
            launcher_session_id=session.launcher_session_id,
            pc_id=pc_id,
            cafe_id=cafe.cafe_id,
            replaced_launcher_session_id=replaced.launcher_session_id if replaced else None,
        )
        return StartedLauncher(session=session, token=token, games=games)

    async def _cafe_of(self, external_ip: str, pc_id: str) -> Cafe:
        try:
            cafe = await self.partner.check_ip(external_ip)
        except PartnerUnavailable as error:
            log.warning("launcher_ip_check_failed", external_ip=external_ip, error=str(error))
            raise ServiceUnavailable(
                "The PC cafe partner could not be reached to check this IP; retry the start."
            ) from error
        if cafe is None:
            log.info("launcher_not_pc_cafe", external_ip=external_ip, pc_id=pc_id)
            raise NotPcCafe(f"The external IP {external_ip} is not a registered PC cafe.")
        return cafe

    async def _insert_replacing(self, session: LauncherSession) -> LauncherSession | None:
        # A concurrent start for the same PC may commit between our read and our insert, and
        # the next attempt then ends that session as the previous one. Each failed attempt means
        # that another start committed, so the bound only matters for a burst of starts.
        for _ in range(START_ATTEMPTS):
            try:
                return await self.records.start_launcher_session(session)
            except PcBusy:
                continue
        raise ServiceUnavailable("Another launcher is starting on this PC right now; retry.")

    async def _close_game_sessions(self, launcher_session_id: str, at: Millis) -> list[str]:
        ended = await self.sessions.end_pc_sessions(
            launcher_session_id, EndReason.LAUNCHER_CLOSED, at
        )
        return [game_session.game_session_id for game_session in ended]

    # Bearer token.

    async def authenticate(self, authorization: str | None) -> LauncherSession:
        """Return the open launcher session of a `Bearer <launcher_session_token>` header.

        A session whose launcher has been silent past the timeout is ended here rather than
        renewed, so the moment the server notices a lost launcher never changes the outcome.
        """
        token = _bearer_token(authorization)
        session = await self.records.find_launcher_session_by_token(self._token_hash(token))
        if session is None:
            raise InvalidToken("The launcher session token is unknown.")
        if session.ended_at is not None:
            raise _ended(session)

        last_seen = await self._last_seen(session)
        if self.clock.now() < last_seen + self.timers.launcher_timeout_ms:
            return session

        ended = await self.end_lost(session.launcher_session_id)
        current = ended or await self.records.get_launcher_session(session.launcher_session_id)
        if current is None or current.ended_at is not None:
            raise _ended(current or session)
        return current

    async def _last_seen(self, session: LauncherSession) -> Millis:
        live_seen = await self.live.launcher_last_seen(session.launcher_session_id)
        return max(session.last_heartbeat_at, live_seen or 0)

    # OTT, heartbeat and end.

    async def issue_ott(self, session: LauncherSession, game_id: str) -> OttGrant:
        """Issue a one-time token binding `game_id` to this launcher session's PC and cafe."""
        game = await self.records.get_game(game_id)
        if game is None or not game.active:
            raise GameNotFound(f"Game {game_id} was not found or is not active.")

        now = self.clock.now()
        grant = OttGrant.issue(
            game_id=game_id,
            pc_id=session.pc_id,
            cafe_id=session.cafe_id,
            launcher_session_id=session.launcher_session_id,
            now=now,
            ttl_ms=self.timers.ott_ttl_ms,
        )
        await self.live.put_ott(grant)
        log.info(
            "ott_issued",
            launcher_session_id=session.launcher_session_id,
            game_id=game_id,
            pc_id=session.pc_id,
        )
        return grant

    async def heartbeat(self, session: LauncherSession) -> int:
        """Record a sign of life of the launcher; return the seconds until the next heartbeat.

        Every heartbeat reaches the live store. The durable record is written only once it is
        half a launcher timeout old, which saves a database write on most heartbeats. If the
        live store loses its data, each launcher still has half the timeout to send its next
        heartbeat.
        """
        now = self.clock.now()
        if now - session.last_heartbeat_at >= self.timers.launcher_timeout_ms // 2:
            touched = await self.records.touch_launcher_session(session.launcher_session_id, now)
            if not touched:
                current = await self.records.get_launcher_session(session.launcher_session_id)
                if current is None or current.ended_at is not None:
                    raise _ended(current or session)
        await self.live.touch_launcher(
            session.launcher_session_id, now, now + self.timers.launcher_timeout_ms
        )
        return self.timers.launcher_heartbeat_sec

    async def end(self, session: LauncherSession) -> list[str]:
        """End a launcher session and its live game sessions (LAUNCHER_CLOSED).

        Returns the ids of the game sessions this call ended. The game sessions end first, so a
        crash in between leaves the launcher session open and a retry finishes the work.
        """
        now = self.clock.now()
        ended_games = await self._close_game_sessions(session.launcher_session_id, now)
        ended = await self.records.end_launcher_session(session.launcher_session_id, CLOSED, now)
        await self.live.forget_launcher(session.launcher_session_id)
        if ended is None:
            current = await self.records.get_launcher_session(session.launcher_session_id)
            raise _ended(current or session)

        log.info(
            "launcher_session_ended",
            launcher_session_id=session.launcher_session_id,
            pc_id=session.pc_id,
            end_reason=CLOSED,
            game_session_ids=ended_games,
        )
        return ended_games

    # Launcher loss.

    async def end_lost(self, launcher_session_id: str) -> LauncherSession | None:
        """End a launcher session that has been silent for the launcher timeout.

        Its live game sessions end with LAUNCHER_LOST, billed to the earlier of the launcher's
        and their own last heartbeat. A launcher found alive is re-armed in the live store.
        Returns the ended launcher session, or None when there was nothing to end.
        """
        now = self.clock.now()
        session = await self.records.get_launcher_session(launcher_session_id)
        if session is None or session.ended_at is not None:
            await self.live.forget_launcher(launcher_session_id)
            return None

        last_seen = await self._last_seen(session)
        deadline = last_seen + self.timers.launcher_timeout_ms
        if now < deadline:
            await self.live.touch_launcher(launcher_session_id, last_seen, deadline)
            return None

        ended_games: list[GameSession] = await self.sessions.end_pc_sessions(
            launcher_session_id, EndReason.LAUNCHER_LOST, now, launcher_last_seen_at=last_seen
        )
        ended = await self.records.end_launcher_session(launcher_session_id, LOST, last_seen)
        await self.live.forget_launcher(launcher_session_id)
        log.info(
            "launcher_session_lost",
            launcher_session_id=launcher_session_id,
            pc_id=session.pc_id,
            last_seen_at=last_seen,
            game_session_ids=[game.game_session_id for game in ended_games],
        )
        return ended


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise InvalidToken(
            "The Authorization header is missing; send 'Bearer <launcher_session_token>'."
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not TOKEN.fullmatch(token):
        raise InvalidToken(
            "The Authorization header must be 'Bearer <launcher_session_token>' with the token "
            "that session start returned."
        )
    return token


def _ended(session: LauncherSession) -> LauncherSessionEnded:
    reason = session.end_reason or "ENDED"
    return LauncherSessionEnded(
        f"Launcher session {session.launcher_session_id} has ended ({reason}); "
        "start a new launcher session."
    )
