"""Money rules. G-coin amounts are integers; no float ever touches money.

Rounding rule: a charge for `seconds` at `rate_per_hour` is `seconds * rate_per_hour // 3600`,
rounded down, so a fraction of a G-coin is never charged to the cafe. Charges are computed on
the cumulative seconds of a session and each report charges the difference from the previous
total, so rounding down never accumulates: the total charge of a session is always the
rounded-down charge of its total billable seconds.

Usage reports during play are provisional. The stop carries the session's final billable
seconds, and the partner settles the session to exactly that total, refunding any seconds that
reports charged beyond it.
"""

from __future__ import annotations


def charge_for(seconds: int, rate_per_hour: int) -> int:
    """Return the G-coin owed for `seconds` of play at `rate_per_hour`, rounded down."""
    if seconds < 0 or rate_per_hour < 0:
        raise ValueError("seconds and rate_per_hour must not be negative")
    return seconds * rate_per_hour // 3600


def incremental_charge(previous_seconds: int, total_seconds: int, rate_per_hour: int) -> int:
    """Return what a report that moves a session from `previous_seconds` to `total_seconds` owes."""
    if total_seconds < previous_seconds:
        raise ValueError("total_seconds must not be below previous_seconds")
    return charge_for(total_seconds, rate_per_hour) - charge_for(previous_seconds, rate_per_hour)


def seconds_covered(balance: int, rate_per_hour: int, previous_seconds: int) -> int:
    """Return the largest cumulative seconds whose incremental charge `balance` still covers."""
    if rate_per_hour == 0:
        raise ValueError("a free game never runs out of balance")
    already = charge_for(previous_seconds, rate_per_hour)
    # Largest s with s * rate // 3600 <= already + balance.
    return ((already + balance + 1) * 3600 - 1) // rate_per_hour


def charge_difference(previous_seconds: int, total_seconds: int, rate_per_hour: int) -> int:
    """Return the G-coin a move from `previous_seconds` to `total_seconds` costs.

    Negative when the total goes down, which only a stop does: the stop's total is final, so
    seconds charged by earlier usage reports beyond it are refunded.
    """
    return charge_for(total_seconds, rate_per_hour) - charge_for(previous_seconds, rate_per_hour)


def usage_seconds_so_far(
    started_at: int, last_heartbeat_at: int, now: int, session_ttl_ms: int
) -> int:
    """Return the seconds a usage report may charge for a live session at `now`.

    Play counts up to `now`, but never past the moment the session would time out after its
    last heartbeat: time after a session's last sign of life is never billed. The stop settles
    the exact total when the session ends.
    """
    counted_until = min(now, last_heartbeat_at + session_ttl_ms)
    return max(0, counted_until - started_at) // 1000


def exhausted_at(started_at: int, charged_seconds: int) -> int:
    """Return the moment (epoch ms) a session's wallet ran out, given the seconds it covered."""
    return started_at + charged_seconds * 1000


# The shortest delay between two usage reports of one session while its wallet runs low.
MIN_REPORT_DELAY_MS = 1_000


def next_report_delay(seconds_left: int | None, interval_ms: int) -> int:
    """Return the milliseconds until a session's next usage report.

    The partner's `seconds_left` is how long the wallet lasts if this session alone draws on
    it. When that is less than two intervals, the next report comes after half of it (at least
    `MIN_REPORT_DELAY_MS`), so exhaustion is found within seconds even while other sessions of
    the same cafe draw on the wallet too.
    """
    if seconds_left is None or seconds_left * 1000 >= 2 * interval_ms:
        return interval_ms
    return max(MIN_REPORT_DELAY_MS, min(interval_ms, seconds_left * 1000 // 2))
