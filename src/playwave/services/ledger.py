"""The billing ledger: what the partner charged, per session and per cafe, from the records.

The ledger is recomputed, never stored: each session's start (which charges nothing) and the
answers to its queued usage reports and stop, as the partner confirmed them in `partner_calls`.
Partner totals are cumulative, so a session's charge is its stop answer once the stop is
confirmed, and the highest confirmed usage answer before that. `check_ledger` compares the
ledger with the records' billable seconds, and `check_against_partner` with the partner's own
totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from playwave.domain.lifecycle import GameSession, SessionState
from playwave.partner.base import Partner
from playwave.stores.base import PartnerCall, RecordStore

PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One billing step of a session: the cumulative totals after it, as the partner answered.

    `status` is "confirmed", "pending" (queued, not yet answered) or "rejected"; the totals
    are None unless confirmed.
    """

    game_session_id: str
    cafe_id: str
    billing_id: str
    step: str
    idempotency_key: str | None
    status: str
    charged_seconds: int | None
    charged_amount: int | None
    exhausted: bool = False


@dataclass
class SessionCharge:
    """What one session was charged, and how far its billing has got."""

    game_session_id: str
    cafe_id: str
    billing_id: str
    state: SessionState
    billable_sec: int | None
    charged_seconds: int = 0
    charged_amount: int = 0
    exhausted: bool = False
    stopped: bool = False
    pending_calls: int = 0
    rejected_calls: int = 0


@dataclass
class CafeTotal:
    cafe_id: str
    sessions: int = 0
    charged_seconds: int = 0
    charged_amount: int = 0


@dataclass
class Ledger:
    entries: list[LedgerEntry] = field(default_factory=list)
    sessions: dict[str, SessionCharge] = field(default_factory=dict)
    cafes: dict[str, CafeTotal] = field(default_factory=dict)

    @property
    def charged_amount(self) -> int:
        return sum(cafe.charged_amount for cafe in self.cafes.values())


@dataclass(frozen=True, slots=True)
class Discrepancy:
    game_session_id: str
    billing_id: str
    problem: str


async def build_ledger(records: RecordStore, *, page_size: int = PAGE_SIZE) -> Ledger:
    """Recompute the ledger of every billed session, a page of sessions at a time."""
    ledger = Ledger()
    after_id: str | None = None
    while True:
        page = await records.list_sessions(after_id, page_size)
        if not page:
            return ledger
        after_id = page[-1].game_session_id
        billed = [session for session in page if session.billing_id is not None]
        calls = await records.partner_calls_of([s.game_session_id for s in billed])
        calls_by_session: dict[str, list[PartnerCall]] = {}
        for call in calls:
            if call.game_session_id is not None:
                calls_by_session.setdefault(call.game_session_id, []).append(call)
        for session in billed:
            _add_session(ledger, session, calls_by_session.get(session.game_session_id, []))


def _add_session(ledger: Ledger, session: GameSession, calls: list[PartnerCall]) -> None:
    assert session.billing_id is not None
    charge = SessionCharge(
        game_session_id=session.game_session_id,
        cafe_id=session.cafe_id,
        billing_id=session.billing_id,
        state=session.state,
        billable_sec=session.billable_sec,
    )
    ledger.entries.append(
        LedgerEntry(
            game_session_id=session.game_session_id,
            cafe_id=session.cafe_id,
            billing_id=session.billing_id,
            step="start",
            idempotency_key=f"start:{session.ott}",
            status="confirmed",
            charged_seconds=0,
            charged_amount=0,
        )
    )

    for call in calls:
        entry = _entry(session, call)
        ledger.entries.append(entry)
        if entry.status == "pending":
            charge.pending_calls += 1
            continue
        if entry.status == "rejected":
            charge.rejected_calls += 1
            continue
        assert entry.charged_seconds is not None and entry.charged_amount is not None
        if call.kind == "stop":
            charge.stopped = True
            charge.charged_seconds = entry.charged_seconds
            charge.charged_amount = entry.charged_amount
            charge.exhausted = entry.exhausted
        elif not charge.stopped and entry.charged_amount >= charge.charged_amount:
            charge.charged_seconds = max(charge.charged_seconds, entry.charged_seconds)
            charge.charged_amount = entry.charged_amount
            charge.exhausted = charge.exhausted or entry.exhausted

    ledger.sessions[session.game_session_id] = charge
    cafe = ledger.cafes.setdefault(session.cafe_id, CafeTotal(session.cafe_id))
    cafe.sessions += 1
    cafe.charged_seconds += charge.charged_seconds
    cafe.charged_amount += charge.charged_amount


def _entry(session: GameSession, call: PartnerCall) -> LedgerEntry:
    assert session.billing_id is not None
    status = "pending"
    seconds = amount = None
    exhausted = False
    result = call.result if call.completed_at is not None else None
    if result is not None and "rejected" in result:
        status = "rejected"
    elif result is not None:
        status = "confirmed"
        seconds = int(result["charged_seconds"])
        amount = int(result.get("charged_amount") or 0)
        exhausted = bool(result.get("exhausted"))
    return LedgerEntry(
        game_session_id=session.game_session_id,
        cafe_id=session.cafe_id,
        billing_id=session.billing_id,
        step=call.kind,
        idempotency_key=call.idempotency_key,
        status=status,
        charged_seconds=seconds,
        charged_amount=amount,
        exhausted=exhausted,
    )


def check_ledger(ledger: Ledger) -> list[Discrepancy]:
    """Return the sessions whose charge does not follow from their records.

    An ended session must have a confirmed stop at its billable seconds, or fewer when the
    wallet ran out; a rejected call always needs an operator.
    """
    problems = []
    for charge in ledger.sessions.values():

        def problem(text: str, charge: SessionCharge = charge) -> None:
            problems.append(Discrepancy(charge.game_session_id, charge.billing_id, text))

        if charge.rejected_calls:
            problem(f"{charge.rejected_calls} partner call(s) rejected")
        if charge.state is not SessionState.ENDED:
            continue
        if not charge.stopped:
            if charge.pending_calls == 0 and not charge.rejected_calls:
                problem("ended, but no stop is queued")
            continue
        billable = charge.billable_sec or 0
        if charge.charged_seconds > billable:
            problem(f"charged {charge.charged_seconds} s, above {billable} billable s")
        if charge.charged_seconds < billable and not charge.exhausted:
            problem(f"charged {charge.charged_seconds} s of {billable} billable s")
    return problems


async def check_against_partner(ledger: Ledger, partner: Partner) -> list[Discrepancy]:
    """Return the sessions whose ledger totals differ from the partner's own.

    Sessions with calls still pending are skipped: the partner may have applied a call whose
    answer the records do not hold yet.
    """
    problems = []
    for charge in ledger.sessions.values():
        if charge.pending_calls:
            continue
        state = await partner.get_billing(charge.billing_id)
        if state is None:
            problems.append(
                Discrepancy(charge.game_session_id, charge.billing_id, "unknown to the partner")
            )
            continue
        differences = []
        if state.charged_seconds != charge.charged_seconds:
            differences.append(f"seconds {charge.charged_seconds} != {state.charged_seconds}")
        if state.charged_amount != charge.charged_amount:
            differences.append(f"G-coin {charge.charged_amount} != {state.charged_amount}")
        if state.stopped != charge.stopped:
            differences.append(f"stopped {charge.stopped} != {state.stopped}")
        if differences:
            text = "ledger vs partner: " + ", ".join(differences)
            problems.append(Discrepancy(charge.game_session_id, charge.billing_id, text))
    return problems
