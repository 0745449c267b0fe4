"""The partner adapter interface.

Every mutating call carries an idempotency key derived from the game session and the step, so
that a retry of any call applies it at most once at the partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PartnerError(Exception):
    """Base of partner failures."""


class PartnerUnavailable(PartnerError):
    """The partner could not be reached or failed; the call may be retried as it was."""


class PartnerRejected(PartnerError):
    """The partner refused the call for good; retrying it unchanged will not help."""


class NotChargeable(PartnerError):
    """The partner refuses to start billing: balance too low or cafe suspended."""


@dataclass(frozen=True, slots=True)
class Cafe:
    cafe_id: str
    name: str


@dataclass(frozen=True, slots=True)
class BillingStarted:
    billing_id: str
    balance: int
    seconds_left: int | None
    price_per_hour: int | None = None


@dataclass(frozen=True, slots=True)
class UsageReported:
    """The partner's answer to a usage report or a stop.

    `charged_seconds` is the session's cumulative billed seconds after the call. When the wallet
    could not cover everything reported, `exhausted` is true and `charged_seconds` is where the
    balance ran out. `charged_amount` is the session's cumulative G-coin after the call.
    """

    balance: int
    charged_seconds: int
    exhausted: bool
    seconds_left: int | None
    charged_amount: int | None = None


@dataclass(frozen=True, slots=True)
class BillingState:
    """The partner's own totals for one billing session, for reconciliation."""

    billing_id: str
    cafe_id: str
    game_session_id: str
    price_per_hour: int
    charged_seconds: int
    charged_amount: int
    exhausted: bool
    stopped: bool


class Partner(Protocol):
    async def check_ip(self, ip: str) -> Cafe | None:
        """Return the cafe registered for external IP `ip`, or None when it is no PC cafe."""
        ...

    async def start_billing(
        self,
        *,
        idempotency_key: str,
        cafe_id: str,
        game_id: str,
        pc_id: str,
        game_session_id: str,
    ) -> BillingStarted:
        """Open a billing session. Opening charges nothing; raises `NotChargeable`."""
        ...

    async def report_usage(
        self, *, idempotency_key: str, billing_id: str, total_seconds: int
    ) -> UsageReported:
        """Charge the seconds played since the last report, given as the new cumulative total."""
        ...

    async def stop_billing(
        self, *, idempotency_key: str, billing_id: str, billable_seconds: int
    ) -> UsageReported:
        """Close a billing session at `billable_seconds` in total.

        The total is final: seconds charged by usage reports beyond it are refunded.
        """
        ...

    async def get_billing(self, billing_id: str) -> BillingState | None:
        """Return the partner's totals for a billing session, or None when it is unknown."""
        ...

    async def close(self) -> None: ...
