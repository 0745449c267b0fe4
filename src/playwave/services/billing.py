"""Billing through the partner: the durable call queue, usage reports and exhaustion.

Every mutating partner call after verify goes through the `partner_calls` queue, written in the
same transaction as the state change that needs it: the stop with the session's end, each usage
report with the update of the session's `reported_sec`. A dispatcher leases due calls, sends
them with their idempotency key, and completes them only when the partner confirmed, so a crash
at any point leads to a resend of the same key, which the partner answers without charging
again. Heartbeats and ends never wait for the partner: while it is down the queue grows, and it
drains once the partner is back.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from playwave import metrics
from playwave.clock import Clock
from playwave.domain.billing import exhausted_at, next_report_delay, usage_seconds_so_far
from playwave.domain.lifecycle import GameSession, SessionState, Timers, grace_started
from playwave.partner.base import (
    Partner,
    PartnerRejected,
    PartnerUnavailable,
    UsageReported,
)
from playwave.stores.base import LiveStore, PartnerCall, RecordStore

log = structlog.get_logger("playwave.billing")

DEFAULT_LEASE_MS = 30_000


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How the dispatcher leases and retries partner calls.

    A lease must outlast one call with all its HTTP attempts, or another worker sends the same
    call meanwhile. That is still safe, because the idempotency key makes the partner apply it
    once, but it wastes a request.
    """

    lease_ms: int = DEFAULT_LEASE_MS
    batch_size: int = 100
    concurrency: int = 16
    # Rounds one dispatch may run back to back while each claims a full batch, so the send rate
    # follows a growing queue instead of the job interval, and one step still ends soon.
    max_rounds: int = 10
    retry_base_ms: int = 1_000
    retry_max_ms: int = 60_000


def usage_report_call(session: GameSession, total_seconds: int) -> PartnerCall:
    """Return the queued call that reports `total_seconds` of `session` as its new total."""
    return PartnerCall(
        idempotency_key=f"usage:{session.game_session_id}:{total_seconds}",
        kind="usage",
        game_session_id=session.game_session_id,
        payload={"billing_id": session.billing_id, "total_seconds": total_seconds},
    )


def retry_delay_ms(attempts: int, policy: QueuePolicy, rng: random.Random) -> int:
    """Return the delay before the next attempt of a call that failed `attempts` times.

    Exponential from `retry_base_ms` up to `retry_max_ms`, with "equal jitter": half the delay
    is fixed and half random, so retries of many calls spread out but none comes at once.
    """
    exponent = min(max(attempts, 1) - 1, 30)
    ceiling = min(policy.retry_max_ms, policy.retry_base_ms * 2**exponent)
    return ceiling // 2 + rng.randint(0, ceiling - ceiling // 2)


class Billing:
    def __init__(
        self,
        records: RecordStore,
        live: LiveStore,
        partner: Partner,
        clock: Clock,
        timers: Timers,
        *,
        policy: QueuePolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.records = records
        self.live = live
        self.partner = partner
        self.clock = clock
        self.timers = timers
        self.policy = policy or _policy_for(partner)
        self._rng = rng or random.Random()

    # Usage reports.

    async def queue_usage_reports(self, limit: int = 500) -> int:
        """Queue a usage report for every ACTIVE session whose report is due; return how many.

        The report carries the session's billable seconds so far as a cumulative total, and is
        queued in the same transaction that records that total in `reported_sec`.
        """
        now = self.clock.now()
        interval_ms = self.timers.usage_report_interval_ms
        due = await self.records.due_usage_reports(now, interval_ms, limit)

        queued = 0
        for session in due:
            total = usage_seconds_so_far(
                session.started_at, session.last_heartbeat_at, now, self.timers.session_ttl_ms
            )
            call = None
            if total > session.reported_sec and session.billing_id is not None:
                call = usage_report_call(session, total)
            applied = await self.records.queue_usage_report(
                session.game_session_id,
                reported_sec=session.reported_sec,
                total_sec=total if call is not None else session.reported_sec,
                next_report_at=now + interval_ms,
                call=call,
                at=now,
            )
            if applied and call is not None:
                queued += 1
                log.debug(
                    "usage_report_queued",
                    game_session_id=session.game_session_id,
                    billing_id=session.billing_id,
                    total_seconds=total,
                )
        return queued

    # The queue dispatcher.

    async def dispatch_partner_calls(self) -> int:
        """Send the partner calls that are due, a leased batch at a time; return how many.

        A round that claimed a full batch is followed at once by another, up to `max_rounds`.
        """
        sent = 0
        for _ in range(self.policy.max_rounds):
            claimed = await self._dispatch_round()
            sent += claimed
            if claimed < self.policy.batch_size:
                break
        return sent

    async def _dispatch_round(self) -> int:
        now = self.clock.now()
        calls = await self.records.claim_partner_calls(
            now, self.policy.lease_ms, self.policy.batch_size
        )
        if not calls:
            return 0

        gate = asyncio.Semaphore(self.policy.concurrency)

        async def dispatch(call: PartnerCall) -> None:
            async with gate:
                await self._dispatch(call)

        outcomes = await asyncio.gather(*(dispatch(call) for call in calls), return_exceptions=True)
        for call, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # The lease lapses and the call is sent again with the same key.
                log.warning(
                    "partner_call_dispatch_failed",
                    call_id=call.call_id,
                    idempotency_key=call.idempotency_key,
                    error=repr(outcome),
                )
        return len(calls)

    async def update_queue_gauge(self) -> int:
        """Set the partner queue's depth and lag gauges; returns 0 as it handles no queued work.

        The lag is the alarm to watch: it grows only when the workers send calls slower than they
        are queued, while a busy but healthy queue can be deep.
        """
        now = self.clock.now()
        metrics.PARTNER_QUEUE.set(await self.records.count_pending_partner_calls())
        oldest_due = await self.records.oldest_due_partner_call(now)
        lag_ms = 0 if oldest_due is None else max(0, now - oldest_due)
        metrics.PARTNER_QUEUE_LAG.set(lag_ms / 1000)
        return 0

    async def _dispatch(self, call: PartnerCall) -> None:
        assert call.call_id is not None
        try:
            answer = await self._send(call)
        except PartnerRejected as rejection:
            await self._record_rejection(call, str(rejection))
            return
        except PartnerUnavailable as error:
            await self._reschedule(call, str(error))
            return
        except Exception as error:
            log.exception(
                "partner_call_failed",
                call_id=call.call_id,
                kind=call.kind,
                idempotency_key=call.idempotency_key,
            )
            await self._reschedule(call, f"{type(error).__name__}: {error}")
            return

        completed = await self.records.complete_partner_call(
            call.call_id, self.clock.now(), asdict(answer)
        )
        metrics.PARTNER_CALLS.labels(call.kind, "completed").inc()
        log.info(
            "partner_call_completed",
            call_id=call.call_id,
            kind=call.kind,
            idempotency_key=call.idempotency_key,
            game_session_id=call.game_session_id,
            charged_seconds=answer.charged_seconds,
            charged_amount=answer.charged_amount,
            exhausted=answer.exhausted,
            first_completion=completed,
        )
        await self._apply_answer(call, answer)

    async def _send(self, call: PartnerCall) -> UsageReported:
        payload = call.payload
        if call.kind == "usage":
            return await self.partner.report_usage(
                idempotency_key=call.idempotency_key,
                billing_id=payload["billing_id"],
                total_seconds=payload["total_seconds"],
            )
        if call.kind == "stop":
            return await self.partner.stop_billing(
                idempotency_key=call.idempotency_key,
                billing_id=payload["billing_id"],
                billable_seconds=payload["billable_seconds"],
            )
        raise PartnerRejected(f"unknown partner call kind {call.kind!r}")

    async def _reschedule(self, call: PartnerCall, error: str) -> None:
        assert call.call_id is not None
        delay = retry_delay_ms(call.attempts, self.policy, self._rng)
        await self.records.retry_partner_call(call.call_id, self.clock.now() + delay, error)
        metrics.PARTNER_CALLS.labels(call.kind, "retry").inc()
        log.warning(
            "partner_call_retry_scheduled",
            call_id=call.call_id,
            kind=call.kind,
            idempotency_key=call.idempotency_key,
            game_session_id=call.game_session_id,
            attempts=call.attempts,
            retry_in_ms=delay,
            error=error,
        )

    async def _record_rejection(self, call: PartnerCall, message: str) -> None:
        """Close a call the partner refused for good, and raise the alert.

        Sending it again unchanged cannot succeed, so it is completed with the rejection as its
        result; the ledger check lists the session until an operator settles it.
        """
        assert call.call_id is not None
        await self.records.complete_partner_call(
            call.call_id, self.clock.now(), {"rejected": message}
        )
        metrics.PARTNER_CALLS.labels(call.kind, "rejected").inc()
        log.error(
            "partner_call_rejected",
            call_id=call.call_id,
            kind=call.kind,
            idempotency_key=call.idempotency_key,
            game_session_id=call.game_session_id,
            error=message,
        )

    # What an answer changes.

    async def _apply_answer(self, call: PartnerCall, answer: UsageReported) -> None:
        """Start the grace of a session whose wallet ran out, or report it sooner when low."""
        if call.game_session_id is None:
            return
        if answer.exhausted:
            await self.mark_exhausted(call.game_session_id, answer.charged_seconds)
            return
        if call.kind != "usage":
            return

        interval_ms = self.timers.usage_report_interval_ms
        delay = next_report_delay(answer.seconds_left, interval_ms)
        if delay < interval_ms:
            await self.records.advance_usage_report(call.game_session_id, self.clock.now() + delay)

    async def mark_exhausted(self, game_session_id: str, charged_seconds: int) -> None:
        """Record that a session's wallet covered only `charged_seconds`; its grace starts.

        Billable time stops at the exhaustion moment. The grace runs from now, when the server
        learns of it, so no heartbeat accepted with result `OK` before this falls after the
        session's end. Heartbeats return CHARGE_EXHAUSTED from now on, and the sweepers end the
        session when the grace is over.
        """
        session = await self.records.get_session(game_session_id)
        if session is None or session.state not in (SessionState.ACTIVE, SessionState.GRACE):
            return

        at = exhausted_at(session.started_at, charged_seconds)
        grace_from = session.grace_started_at
        newly = False
        if grace_from is None:
            grace_from = grace_started(at, self.clock.now())
            newly = await self.records.mark_exhausted(game_session_id, at, grace_from)
            if not newly:
                # Another worker marked the record after it was read, so use that worker's grace.
                marked = await self.records.get_session(game_session_id)
                if marked is None or marked.grace_started_at is None:
                    return
                grace_from = marked.grace_started_at

        # The live copy is marked even when another worker marked the records first, in case
        # that worker stopped before it got here; the live store ignores a repeat.
        await self.live.start_grace(game_session_id, grace_from, self.timers)
        if newly:
            log.info(
                "charge_exhausted",
                game_session_id=game_session_id,
                cafe_id=session.cafe_id,
                billing_id=session.billing_id,
                charged_seconds=charged_seconds,
                exhausted_at=at,
                grace_started_at=grace_from,
            )


def _policy_for(partner: Partner) -> QueuePolicy:
    """Return the default policy, with a lease that outlasts one call to `partner`."""
    call_seconds: Any = getattr(partner, "max_call_seconds", 0)
    lease_ms = max(DEFAULT_LEASE_MS, int(call_seconds * 1000) + 5_000)
    return QueuePolicy(lease_ms=lease_ms)
