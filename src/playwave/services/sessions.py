"""Game session use cases: verify, heartbeat, check, end, and every server-side end."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from playwave import ids, metrics
from playwave.clock import Clock, Millis
from playwave.domain.lifecycle import (
    EndReason,
    GameSession,
    SessionState,
    Timers,
    automatic_end,
    next_heartbeat_in,
    play_duration_now,
    resolve_end,
)
from playwave.domain.live import LiveSession, Touch, TouchStatus
from playwave.partner.base import NotChargeable, Partner, PartnerUnavailable
from playwave.services.errors import (
    AlreadyEnded,
    ServiceUnavailable,
    SessionEnded,
    SessionEnding,
    SessionNotFound,
)
from playwave.services.keys import AuthenticatedKey
from playwave.stores.base import LiveStore, OttConsumed, OttGrant, PartnerCall, PcBusy, RecordStore

log = structlog.get_logger("playwave.sessions")

# How long an end may stall (a crash between its steps) before a sweeper finishes it.
ENDING_RETRY_MS = 10_000
# How long an ended session's tombstone stays in the live store, so 410 responses need no SQL.
TOMBSTONE_MS = 600_000


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    is_valid: bool
    game_session_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatOutcome:
    result: str
    next_heartbeat_in: int
    play_duration_sec: int


@dataclass(frozen=True, slots=True)
class EndOutcome:
    play_duration_sec: int
    client_play_duration_sec: int | None


def stop_billing_call(session: GameSession) -> PartnerCall:
    """Return the queued partner call that closes `session`'s billing with its final seconds."""
    return PartnerCall(
        idempotency_key=f"stop:{session.game_session_id}",
        kind="stop",
        game_session_id=session.game_session_id,
        payload={"billing_id": session.billing_id, "billable_seconds": session.billable_sec},
    )


class GameSessions:
    def __init__(
        self,
        records: RecordStore,
        live: LiveStore,
        partner: Partner,
        clock: Clock,
        timers: Timers,
    ) -> None:
        self.records = records
        self.live = live
        self.partner = partner
        self.clock = clock
        self.timers = timers

    # Verify.

    async def verify(self, key: AuthenticatedKey, ott: str, provider_user_id: str) -> VerifyOutcome:
        """Consume `ott` for `provider_user_id` and start a billed game session.

        Exactly one of any number of concurrent verifies of one OTT creates the session: the
        records hold one session per OTT. A repeat by the same game and user while the session is
        live returns the same id, so a game server whose first call timed out keeps its player.
        """
        now = self.clock.now()
        existing = await self.records.get_session_by_ott(ott)
        if existing is not None:
            return await self._repeat_outcome(existing, key, provider_user_id)

        grant = await self.live.get_ott(ott, now)
        if grant is None:
            return self._invalid("OTT_EXPIRED", ott, key)
        if grant.game_id != key.game_id:
            return self._invalid("GAME_MISMATCH", ott, key)

        game_session_id = ids.game_session_id_for(ott)
        try:
            started = await self.partner.start_billing(
                idempotency_key=f"start:{ott}",
                cafe_id=grant.cafe_id,
                game_id=key.game_id,
                pc_id=grant.pc_id,
                game_session_id=game_session_id,
            )
        except NotChargeable as refusal:
            log.info(
                "verify_not_chargeable",
                cafe_id=grant.cafe_id,
                game_id=key.game_id,
                reason=str(refusal),
            )
            return self._invalid("NOT_CHARGEABLE", ott, key)
        except PartnerUnavailable as error:
            log.warning("verify_partner_unavailable", cafe_id=grant.cafe_id, error=str(error))
            raise ServiceUnavailable(
                "The PC cafe partner could not be reached to start billing; retry the verify."
            ) from error

        session = self._new_session(
            game_session_id, grant, key, provider_user_id, now, started.billing_id
        )
        try:
            await self._insert_replacing(session)
        except OttConsumed as consumed:
            return await self._repeat_outcome(consumed.existing, key, provider_user_id)

        await self.live.put_session(LiveSession.from_record(session, self.timers))
        await self.live.delete_ott(ott)
        metrics.SESSIONS_STARTED.inc()
        metrics.VERIFY_RESULTS.labels("VALID").inc()
        log.info(
            "session_started",
            game_session_id=game_session_id,
            game_id=key.game_id,
            cafe_id=grant.cafe_id,
            pc_id=grant.pc_id,
            billing_id=started.billing_id,
        )
        return VerifyOutcome(is_valid=True, game_session_id=game_session_id)

    def _new_session(
        self,
        game_session_id: str,
        grant: OttGrant,
        key: AuthenticatedKey,
        provider_user_id: str,
        now: Millis,
        billing_id: str,
    ) -> GameSession:
        return GameSession(
            game_session_id=game_session_id,
            ott=grant.ott,
            game_id=key.game_id,
            api_key_id=key.key_id,
            environment=key.environment,
            provider_user_id=provider_user_id,
            cafe_id=grant.cafe_id,
            pc_id=grant.pc_id,
            launcher_session_id=grant.launcher_session_id,
            rate_per_hour=key.game.rate_per_hour,
            billing_id=billing_id,
            state=SessionState.ACTIVE,
            started_at=now,
            last_heartbeat_at=now,
        )

    async def _insert_replacing(self, session: GameSession) -> None:
        """Insert `session`, first ending any other live session on its PC as replaced."""
        for _ in range(5):
            previous = await self.records.live_session_on_pc(session.pc_id)
            if previous is not None:
                if previous.ott == session.ott:
                    raise OttConsumed(previous)
                await self.end_session(previous, EndReason.SESSION_REPLACED, session.started_at)
            try:
                await self.records.create_session(session)
                return
            except PcBusy:
                continue
        raise ServiceUnavailable("The PC's previous game session could not be ended; retry.")

    async def _repeat_outcome(
        self, existing: GameSession, key: AuthenticatedKey, provider_user_id: str
    ) -> VerifyOutcome:
        if existing.game_id != key.game_id:
            return self._invalid("GAME_MISMATCH", existing.ott, key)
        if existing.provider_user_id != provider_user_id or not existing.is_live:
            return self._invalid("OTT_ALREADY_USED", existing.ott, key)

        # A session whose deadline passed is dead even if no sweep has ended it yet: end it now
        # rather than hand it back to the game server.
        if await self.end_due(existing.game_session_id) is not None:
            return self._invalid("OTT_ALREADY_USED", existing.ott, key)
        current = await self.records.get_session(existing.game_session_id)
        if current is None or not current.is_live:
            return self._invalid("OTT_ALREADY_USED", existing.ott, key)

        metrics.VERIFY_RESULTS.labels("REPEATED").inc()
        return VerifyOutcome(is_valid=True, game_session_id=existing.game_session_id)

    def _invalid(self, reason: str, ott: str, key: AuthenticatedKey) -> VerifyOutcome:
        metrics.VERIFY_RESULTS.labels(reason).inc()
        log.info(
            "verify_rejected",
            reason=reason,
            game_id=key.game_id,
            api_key_id=key.key_id,
            ott_prefix=ott[:8],
        )
        return VerifyOutcome(is_valid=False, reason=reason)

    # Heartbeat and check.

    async def heartbeat(
        self, key: AuthenticatedKey, game_session_id: str, provider_user_id: str
    ) -> HeartbeatOutcome:
        """Renew a live session's deadline and report its server-side play time."""
        now = self.clock.now()
        outcome = await self.live.touch(
            game_session_id, key.game_id, provider_user_id, now, self.timers
        )
        if outcome.status is TouchStatus.MISSING:
            outcome = await self._touch_from_records(key, game_session_id, provider_user_id, now)
        return await self._heartbeat_answer(outcome, game_session_id, now)

    async def _touch_from_records(
        self, key: AuthenticatedKey, game_session_id: str, provider_user_id: str, now: Millis
    ) -> Touch:
        """Apply a heartbeat that the live store does not know, using the durable record.

        The live copy may be missing because its tombstone expired or because the live store
        lost its data; a live record is then copied back and the heartbeat applied to it.
        """
        record = await self.records.get_session(game_session_id)
        if (
            record is None
            or record.game_id != key.game_id
            or record.provider_user_id != provider_user_id
        ):
            return Touch(TouchStatus.MISMATCH, None)
        if record.state is SessionState.ENDED:
            return Touch(TouchStatus.ENDED, LiveSession.from_record(record, self.timers))

        log.info("live_session_restored", game_session_id=game_session_id)
        await self.live.put_session(LiveSession.from_record(record, self.timers))
        return await self.live.touch(
            game_session_id, key.game_id, provider_user_id, now, self.timers
        )

    async def _heartbeat_answer(
        self, outcome: Touch, game_session_id: str, now: Millis
    ) -> HeartbeatOutcome:
        session = outcome.session
        match outcome.status:
            case TouchStatus.TOUCHED if session is not None:
                result = "CHARGE_EXHAUSTED" if session.grace_started_at is not None else "OK"
                return HeartbeatOutcome(
                    result=result,
                    next_heartbeat_in=next_heartbeat_in(now, session.grace_started_at, self.timers),
                    play_duration_sec=play_duration_now(session.started_at, now),
                )
            case TouchStatus.ENDING:
                raise SessionEnding(f"Session {game_session_id} is ending.")
            case TouchStatus.ENDED if session is not None:
                return await self._ended_answer(game_session_id, session, now)
            case TouchStatus.EXPIRED:
                await self.end_due(game_session_id)
                raise SessionEnded(f"Session {game_session_id} has ended.")
            case _:
                raise SessionNotFound(f"Session {game_session_id} was not found for this game.")

    async def _ended_answer(
        self, game_session_id: str, session: LiveSession, now: Millis
    ) -> HeartbeatOutcome:
        if session.end_reason is EndReason.SESSION_REPLACED:
            record = await self.records.get_session(game_session_id)
            if (
                record is not None
                and record.ended_at is not None
                and (now < record.ended_at + self.timers.replaced_answer_ms)
            ):
                return HeartbeatOutcome(
                    result="SESSION_REPLACED",
                    next_heartbeat_in=self.timers.heartbeat_interval_sec,
                    play_duration_sec=record.play_duration_sec or 0,
                )
        raise SessionEnded(f"Session {game_session_id} has ended.")

    async def check(
        self, key: AuthenticatedKey, game_session_id: str, provider_user_id: str
    ) -> HeartbeatOutcome:
        """Confirm a session after a teleport; renews the deadline like a heartbeat."""
        answer = await self.heartbeat(key, game_session_id, provider_user_id)
        if answer.result == "SESSION_REPLACED":
            raise SessionEnded(f"Session {game_session_id} has ended: it was replaced.")
        return answer

    # End.

    async def end(
        self, key: AuthenticatedKey, game_session_id: str, client_play_duration_sec: int | None
    ) -> EndOutcome:
        """End a session at the game server's request (end reason NORMAL)."""
        record = await self.records.get_session(game_session_id)
        if record is None or record.game_id != key.game_id:
            raise SessionNotFound(f"Session {game_session_id} was not found for this game.")
        if record.state is SessionState.ENDED:
            raise AlreadyEnded(f"Session {game_session_id} has already ended.")

        ended = await self.end_session(
            record, EndReason.NORMAL, self.clock.now(), client_play_duration_sec
        )
        if ended is None or ended.end_reason is not EndReason.NORMAL:
            raise AlreadyEnded(f"Session {game_session_id} has already ended.")
        return EndOutcome(
            play_duration_sec=ended.play_duration_sec or 0,
            client_play_duration_sec=client_play_duration_sec,
        )

    async def terminate(self, game_session_id: str) -> GameSession | None:
        """End a session for an operator (ADMIN_TERMINATED); None if it was not live."""
        record = await self.records.get_session(game_session_id)
        if record is None or record.state is SessionState.ENDED:
            return None
        return await self.end_session(record, EndReason.ADMIN_TERMINATED, self.clock.now())

    async def end_session(
        self,
        record: GameSession,
        reason: EndReason,
        at: Millis,
        client_play_duration_sec: int | None = None,
        *,
        launcher_last_seen_at: Millis | None = None,
    ) -> GameSession | None:
        """End `record` for `reason` requested at `at`; every end path goes through here.

        Returns the ended record, or None when another caller ended the session first. The live
        copy is marked ENDING first, so heartbeats get SESSION_ENDING while the records are
        written. The stop-billing call is queued in the same transaction as the end.
        """
        game_session_id = record.game_session_id
        live_copy = await self.live.get_session(game_session_id)
        live_heartbeat = live_copy.last_heartbeat_at if live_copy is not None else None
        end = resolve_end(
            record,
            reason,
            at,
            self.timers,
            last_heartbeat_at=live_heartbeat,
            launcher_last_seen_at=launcher_last_seen_at,
        )

        await self.live.mark_ending(game_session_id, end.reason, at + ENDING_RETRY_MS)
        final = record.replace(billable_sec=end.billable_sec)
        calls = [stop_billing_call(final)] if record.billing_id else []
        ended = await self.records.end_session(
            game_session_id, end, client_play_duration_sec, calls
        )
        if ended is None:
            current = await self.records.get_session(game_session_id)
            if current is not None and current.end_reason is not None:
                await self.live.mark_ended(
                    game_session_id, current.end_reason, self._keep_until(current)
                )
            return None

        await self.live.mark_ended(game_session_id, end.reason, self._keep_until(ended))
        metrics.SESSIONS_ENDED.labels(end.reason.value).inc()
        log.info(
            "session_ended",
            game_session_id=game_session_id,
            game_id=ended.game_id,
            cafe_id=ended.cafe_id,
            pc_id=ended.pc_id,
            end_reason=end.reason.value,
            play_duration_sec=end.play_duration_sec,
            billable_sec=end.billable_sec,
        )
        return ended

    def _keep_until(self, session: GameSession) -> Millis:
        ended_at = session.ended_at or self.clock.now()
        if session.end_reason is EndReason.SESSION_REPLACED:
            return ended_at + max(self.timers.replaced_answer_ms, TOMBSTONE_MS)
        return self.clock.now() + TOMBSTONE_MS

    # Server-side ends.

    async def end_due(self, game_session_id: str) -> GameSession | None:
        """End a session whose live deadline passed, if it really is due.

        The records and the live copy are read together: the fresher heartbeat counts, a stalled
        end is finished with its original reason, and a session found not due is re-armed.
        """
        now = self.clock.now()
        record = await self.records.get_session(game_session_id)
        live_copy = await self.live.get_session(game_session_id)
        if record is None:
            return None
        if record.state is SessionState.ENDED:
            if live_copy is not None and live_copy.state is not SessionState.ENDED:
                await self.live.mark_ended(
                    game_session_id, record.end_reason or EndReason.NORMAL, self._keep_until(record)
                )
            return None

        if live_copy is not None and live_copy.state is SessionState.ENDING:
            reason = live_copy.end_reason or EndReason.HEARTBEAT_TIMEOUT
            requested_at = live_copy.deadline - ENDING_RETRY_MS
            log.warning(
                "session_end_resumed", game_session_id=game_session_id, end_reason=reason.value
            )
            return await self.end_session(record, reason, requested_at)

        last_heartbeat = record.last_heartbeat_at
        if live_copy is not None:
            last_heartbeat = max(last_heartbeat, live_copy.last_heartbeat_at)
        due = automatic_end(last_heartbeat, record.grace_started_at, now, self.timers)
        if due is None:
            fresh = LiveSession.from_record(
                record.replace(last_heartbeat_at=last_heartbeat), self.timers
            )
            await self.live.put_session(fresh)
            return None
        return await self.end_session(record, due[0], now)

    async def end_pc_sessions(
        self,
        launcher_session_id: str,
        reason: EndReason,
        at: Millis,
        launcher_last_seen_at: Millis | None = None,
    ) -> list[GameSession]:
        """End every live game session started through a launcher session."""
        ended = []
        for record in await self.records.live_sessions_of_launcher(launcher_session_id):
            result = await self.end_session(
                record, reason, at, launcher_last_seen_at=launcher_last_seen_at
            )
            if result is not None:
                ended.append(result)
        return ended

    async def require_live(self, game_session_id: str) -> GameSession:
        record = await self.records.get_session(game_session_id)
        if record is None:
            raise SessionNotFound(f"Session {game_session_id} was not found.")
        if record.state is SessionState.ENDED:
            raise SessionEnded(f"Session {game_session_id} has ended.")
        return record
