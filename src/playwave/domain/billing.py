"""Money rules. G-coin amounts are integers; no float ever touches money.

Rounding rule: a charge for `seconds` at `rate_per_hour` is `seconds * rate_per_hour // 3600`,
rounded down, so a fraction of a G-coin is never charged to the cafe. Charges are computed on
the cumulative seconds of a session and each report charges the difference from the previous
total, so rounding down never accumulates: the total charge of a session is always the
rounded-down charge of its total billable seconds.
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
