"""Monthly settlement arithmetic: month boundaries, splitting sessions at them, and amounts.

Months are calendar months in a configurable time zone (Asia/Seoul by default), given as
half-open ranges [start, end) of epoch milliseconds.

Splitting seconds: a session's play is counted on its own grid of whole seconds. Second k covers
[started_at + 1000k, started_at + 1000(k + 1)) for 0 <= k < play_duration_sec, and it belongs to
the month in which it begins. The fraction of a second at the end of a session is the part its
`play_duration_sec` already rounds down, so the months' seconds of a session add up to exactly its
`play_duration_sec`, and no second is counted in two months. Billable play stops at exhaustion,
so the billable seconds are the first `billable_sec` seconds of that grid and are split the same
way: the months' billable seconds add up to exactly the session's `billable_sec`.

Amounts: a session's amount for a month is the charge of its cumulative billable seconds up to the
end of that month minus the charge up to the start of that month, each rounded down with
`playwave.domain.billing.charge_for`. The rounding-down remainder therefore never accumulates:
the months' amounts of one session add up to exactly `charge_for(billable_sec, rate_per_hour)`,
which is what the cafe was charged, and a session inside one month gets exactly that. A game's
amount for a month is the sum of its sessions' amounts for the month.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from playwave.clock import Millis
from playwave.domain.billing import charge_for

_MONTH = re.compile(r"(\d{4})-(\d{2})")

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month, written YYYY-MM."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1970 <= self.year <= 9999:
            raise ValueError(f"month {self.year:04d}-{self.month:02d} is out of range")

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse YYYY-MM; raise ValueError naming the text when it is not a valid month."""
        match = _MONTH.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"month {text!r} is not in the form YYYY-MM")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Month:
        if self.month == 12:
            return Month(self.year + 1, 1)
        return Month(self.year, self.month + 1)

    def previous(self) -> Month:
        if self.month == 1:
            return Month(self.year - 1, 12)
        return Month(self.year, self.month - 1)


def zone(timezone: str) -> ZoneInfo:
    """Return the IANA time zone `timezone`; raise ValueError naming it when it is unknown."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"time zone {timezone!r} is not a known IANA time zone") from error


@lru_cache(maxsize=1024)
def month_bounds(month: Month, timezone: str) -> tuple[Millis, Millis]:
    """Return the month's [start, end) in epoch milliseconds, midnight to midnight in `timezone`."""
    tz = zone(timezone)
    start = datetime(month.year, month.month, 1, tzinfo=tz)
    following = month.next()
    end = datetime(following.year, following.month, 1, tzinfo=tz)
    return int(start.timestamp()) * 1000, int(end.timestamp()) * 1000


def month_containing(at: Millis, timezone: str) -> Month:
    """Return the month of `timezone` that contains the instant `at`."""
    local = datetime.fromtimestamp(at // 1000, tz=zone(timezone))
    return Month(local.year, local.month)


def local_iso(at: Millis, timezone: str) -> str:
    """Format `at` as ISO 8601 local time in `timezone`, with its UTC offset."""
    return datetime.fromtimestamp(at // 1000, tz=zone(timezone)).isoformat()


def seconds_in_window(
    started_at: Millis, total_sec: int, window_start: Millis, window_end: Millis
) -> int:
    """Count the seconds k < `total_sec` of a session that begin in [window_start, window_end)."""
    if total_sec <= 0 or window_end <= window_start:
        return 0
    first = max(0, _ceil_div(window_start - started_at, 1000))
    stop = min(total_sec, _ceil_div(window_end - started_at, 1000))
    return max(0, stop - first)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True, slots=True)
class SessionPiece:
    """The part of one session that falls in one month."""

    month: Month
    play_sec: int
    billable_sec: int
    amount: int


def split_session(
    started_at: Millis,
    play_duration_sec: int,
    billable_sec: int,
    rate_per_hour: int,
    timezone: str,
) -> list[SessionPiece]:
    """Split a session into one piece per month it has play seconds in.

    The month that contains `started_at` always gets a piece, so a session shorter than a second
    is still counted once. The pieces' seconds, billable seconds and amounts add up to the
    session's totals exactly (see the module docstring for the rules).
    """
    if play_duration_sec < 0 or billable_sec < 0 or billable_sec > play_duration_sec:
        raise ValueError(
            f"billable_sec {billable_sec} must be between 0 and "
            f"play_duration_sec {play_duration_sec}"
        )

    last_second_at = started_at + 1000 * max(0, play_duration_sec - 1)
    month = month_containing(started_at, timezone)
    last_month = month_containing(last_second_at, timezone)

    pieces = []
    billable_before = 0
    while month <= last_month:
        start, end = month_bounds(month, timezone)
        play = seconds_in_window(started_at, play_duration_sec, start, end)
        billable = seconds_in_window(started_at, billable_sec, start, end)
        amount = charge_for(billable_before + billable, rate_per_hour) - charge_for(
            billable_before, rate_per_hour
        )
        pieces.append(SessionPiece(month, play, billable, amount))
        billable_before += billable
        month = month.next()
    return pieces


def piece_in_month(
    started_at: Millis,
    play_duration_sec: int,
    billable_sec: int,
    rate_per_hour: int,
    month: Month,
    timezone: str,
) -> SessionPiece | None:
    """Return the piece of a session in `month` as `split_session` would, or None if it has none.

    This computes one month directly, so settling a month costs the same for every session.
    """
    start, end = month_bounds(month, timezone)
    play = seconds_in_window(started_at, play_duration_sec, start, end)
    if play == 0 and not start <= started_at < end:
        return None

    billable = seconds_in_window(started_at, billable_sec, start, end)
    billable_before = seconds_in_window(started_at, billable_sec, started_at, start)
    amount = charge_for(billable_before + billable, rate_per_hour) - charge_for(
        billable_before, rate_per_hour
    )
    return SessionPiece(month, play, billable, amount)


@dataclass(slots=True)
class LineTotals:
    """Counts and sums of the session pieces of one statement line."""

    sessions: int = 0
    unique_users: int = 0
    play_sec: int = 0
    billable_sec: int = 0
    amount: int = 0

    def add(self, piece: SessionPiece) -> None:
        self.sessions += 1
        self.play_sec += piece.play_sec
        self.billable_sec += piece.billable_sec
        self.amount += piece.amount


@dataclass(slots=True)
class Tally(Generic[Key]):
    """Per-line totals of session pieces, fed grouped by user.

    Pieces must arrive with all of one user's pieces next to each other (a stream ordered by
    user), so unique users are counted with memory for one user's lines, not for every user.
    """

    lines: dict[Key, LineTotals] = field(default_factory=dict)
    unique_users: int = 0
    _user: str | None = None
    _user_keys: set[Key] = field(default_factory=set)

    def add(self, key: Key, provider_user_id: str, piece: SessionPiece) -> None:
        if provider_user_id != self._user:
            self._close_user()
            self._user = provider_user_id
        self._user_keys.add(key)
        self.lines.setdefault(key, LineTotals()).add(piece)

    def finish(self) -> dict[Key, LineTotals]:
        """Count the last user and return the lines; call once after the last piece."""
        self._close_user()
        self._user = None
        return self.lines

    def _close_user(self) -> None:
        if self._user is None:
            return
        for key in self._user_keys:
            self.lines[key].unique_users += 1
        self.unique_users += 1
        self._user_keys.clear()


@dataclass(frozen=True, slots=True)
class GameLine:
    """One game's figures in a month's statement.

    `sessions` to `amount` are the month's own play. `late_end_*` are sessions of closed months
    that ended after their month was closed, settled in this month instead. `correction_*` are
    operator adjustments. The `total_*` figures add all three.
    """

    game_id: str
    game_name: str
    sessions: int = 0
    unique_users: int = 0
    open_sessions: int = 0
    play_sec: int = 0
    billable_sec: int = 0
    amount: int = 0
    late_end_sessions: int = 0
    late_end_play_sec: int = 0
    late_end_billable_sec: int = 0
    late_end_amount: int = 0
    correction_count: int = 0
    correction_sec: int = 0
    correction_amount: int = 0
    total_billable_sec: int = 0
    total_amount: int = 0


FIGURES = tuple(name for name in GameLine.__slots__ if name not in ("game_id", "game_name"))


@dataclass(frozen=True, slots=True)
class Correction:
    """An operator adjustment as it appears in a statement."""

    adjustment_id: int
    game_id: str
    game_session_id: str | None
    seconds: int
    amount: int
    reason: str
    created_by: str
    created_at: Millis


def build_game_lines(
    game_names: dict[str, str],
    play: dict[str, LineTotals],
    late_ends: dict[tuple[str, str], LineTotals],
    corrections: list[Correction],
    open_sessions: dict[str, int],
) -> list[GameLine]:
    """Combine a month's play, late ends, corrections and open sessions into one line per game.

    A game gets a line when it has any of the four; lines are ordered by game id.
    """
    game_ids = set(play) | {game_id for game_id, _ in late_ends} | set(open_sessions)
    game_ids |= {correction.game_id for correction in corrections}

    lines = []
    for game_id in sorted(game_ids):
        own = play.get(game_id, LineTotals())
        late = LineTotals()
        for (late_game_id, _service_month), totals in late_ends.items():
            if late_game_id == game_id:
                late.sessions += totals.sessions
                late.play_sec += totals.play_sec
                late.billable_sec += totals.billable_sec
                late.amount += totals.amount
        game_corrections = [c for c in corrections if c.game_id == game_id]
        correction_sec = sum(c.seconds for c in game_corrections)
        correction_amount = sum(c.amount for c in game_corrections)

        lines.append(
            GameLine(
                game_id=game_id,
                game_name=game_names.get(game_id, ""),
                sessions=own.sessions,
                unique_users=own.unique_users,
                open_sessions=open_sessions.get(game_id, 0),
                play_sec=own.play_sec,
                billable_sec=own.billable_sec,
                amount=own.amount,
                late_end_sessions=late.sessions,
                late_end_play_sec=late.play_sec,
                late_end_billable_sec=late.billable_sec,
                late_end_amount=late.amount,
                correction_count=len(game_corrections),
                correction_sec=correction_sec,
                correction_amount=correction_amount,
                total_billable_sec=own.billable_sec + late.billable_sec + correction_sec,
                total_amount=own.amount + late.amount + correction_amount,
            )
        )
    return lines


def sum_lines(lines: list[GameLine], unique_users: int) -> dict[str, int]:
    """Add up the figures of `lines`; unique users are given, because users play several games."""
    totals = {name: sum(getattr(line, name) for line in lines) for name in FIGURES}
    totals["unique_users"] = unique_users
    return totals
