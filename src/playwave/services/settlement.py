"""Monthly settlement: compute a month, close it for good, export it, and record corrections.

A month's statement settles the ended sessions with play in the month. Sessions still live are
counted as open and settled once they end. Months close in calendar order, only once they are
over, and a closed month never changes: computing it again returns the stored exports byte for
byte. A session with play in a closed month that ends after the close is settled as a late end
in the first open month, and operator corrections are adjustments of an open month. Once a month
is closed, earlier months can no longer be closed, so their late ends are never settled.

Sessions are streamed from the database in pages, so memory stays flat in the number of
sessions of a month.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TextIO

import structlog

from playwave.clock import Clock, Millis, to_iso
from playwave.domain.billing import charge_for
from playwave.domain.settlement import (
    FIGURES,
    Correction,
    GameLine,
    LineTotals,
    Month,
    SessionPiece,
    Tally,
    build_game_lines,
    local_iso,
    month_bounds,
    month_containing,
    piece_in_month,
    split_session,
    sum_lines,
    zone,
)
from playwave.stores.sql.settlement import (
    Adjustment,
    ClosedStatement,
    DetailLine,
    SettledSession,
    SettlementReader,
    SettlementWriter,
    SqlSettlementStore,
)

log = structlog.get_logger("playwave.settlement")

ExportFormat = Literal["csv", "json"]
# Called with (sessions streamed so far, sessions to stream in total).
ProgressCallback = Callable[[int, int], None]

DETAIL_FIELDS = (
    "month",
    "kind",
    "service_month",
    "game_id",
    "game_session_id",
    "provider_user_id",
    "started_at",
    "ended_at",
    "rate_per_hour",
    "play_sec",
    "billable_sec",
    "amount",
    "adjustment_id",
    "reason",
    "created_by",
)


class SettlementError(ValueError):
    """A settlement request that cannot be carried out as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class LateEndLine:
    """Late-ended sessions of one game and one closed month, settled in a later month."""

    game_id: str
    service_month: str
    sessions: int
    unique_users: int
    play_sec: int
    billable_sec: int
    amount: int


@dataclass(frozen=True, slots=True)
class Statement:
    """A month's statement: one line per game, the adjustment lines, and the totals."""

    month: str
    timezone: str
    period_start: Millis
    period_end: Millis
    status: Literal["open", "closed"]
    computed_at: Millis
    games: list[GameLine]
    late_ends: list[LateEndLine]
    corrections: list[Correction]
    totals: dict[str, int]

    def to_document(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "timezone": self.timezone,
            "period_start": local_iso(self.period_start, self.timezone),
            "period_end": local_iso(self.period_end, self.timezone),
            "status": self.status,
            "computed_at": to_iso(self.computed_at),
            "games": [dataclasses.asdict(line) for line in self.games],
            "adjustments": {
                "late_ends": [dataclasses.asdict(line) for line in self.late_ends],
                "corrections": [
                    {**dataclasses.asdict(c), "created_at": to_iso(c.created_at)}
                    for c in self.corrections
                ],
            },
            "totals": self.totals,
        }

    def for_game(self, game_id: str) -> Statement:
        """Return the statement restricted to one game, its totals being that game's line."""
        games = [line for line in self.games if line.game_id == game_id]
        totals = {name: getattr(games[0], name) for name in FIGURES} if games else {}
        return dataclasses.replace(
            self,
            games=games,
            late_ends=[line for line in self.late_ends if line.game_id == game_id],
            corrections=[c for c in self.corrections if c.game_id == game_id],
            totals=totals or dict.fromkeys(FIGURES, 0),
        )


def statement_from_document(document: dict[str, Any], period: tuple[Millis, Millis]) -> Statement:
    """Rebuild a statement from its JSON export (the stored form of a closed month)."""
    corrections = [
        Correction(**{**item, "created_at": _parse_iso(item["created_at"])})
        for item in document["adjustments"]["corrections"]
    ]
    return Statement(
        month=document["month"],
        timezone=document["timezone"],
        period_start=period[0],
        period_end=period[1],
        status=document["status"],
        computed_at=_parse_iso(document["computed_at"]),
        games=[GameLine(**item) for item in document["games"]],
        late_ends=[LateEndLine(**item) for item in document["adjustments"]["late_ends"]],
        corrections=corrections,
        totals=document["totals"],
    )


def _parse_iso(text: str) -> Millis:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def render_json(statement: Statement) -> str:
    """Render the summary as canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(statement.to_document(), ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def render_csv(statement: Statement) -> str:
    """Render the summary as CSV, one row per game; the rows add up to the JSON totals."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["month", "game_id", "game_name", *FIGURES])
    for line in statement.games:
        writer.writerow(
            [statement.month, line.game_id, line.game_name, *(getattr(line, f) for f in FIGURES)]
        )
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class StatementExport:
    """A statement with its exact CSV and JSON exports; for a closed month, the stored ones."""

    statement: Statement
    json_text: str
    csv_text: str
    checksum: str
    closed: bool

    def text(self, export_format: ExportFormat) -> str:
        return self.json_text if export_format == "json" else self.csv_text


def _checksum(json_text: str, csv_text: str) -> str:
    digest = hashlib.sha256()
    digest.update(json_text.encode())
    digest.update(b"\0")
    digest.update(csv_text.encode())
    return digest.hexdigest()


def _export(statement: Statement, closed: bool) -> StatementExport:
    json_text = render_json(statement)
    csv_text = render_csv(statement)
    return StatementExport(statement, json_text, csv_text, _checksum(json_text, csv_text), closed)


def _piece_in(session: SettledSession, month: Month, timezone: str) -> SessionPiece | None:
    return piece_in_month(
        session.started_at,
        session.play_duration_sec,
        session.billable_sec,
        session.rate_per_hour,
        month,
        timezone,
    )


def _pieces(session: SettledSession, timezone: str) -> list[SessionPiece]:
    return split_session(
        session.started_at,
        session.play_duration_sec,
        session.billable_sec,
        session.rate_per_hour,
        timezone,
    )


def _detail_line(
    month: Month, kind: str, session: SettledSession, piece: SessionPiece
) -> DetailLine:
    return DetailLine(
        month=str(month),
        service_month=str(piece.month),
        kind=kind,
        game_id=session.game_id,
        game_session_id=session.game_session_id,
        provider_user_id=session.provider_user_id,
        started_at=session.started_at,
        ended_at=session.ended_at,
        rate_per_hour=session.rate_per_hour,
        play_sec=piece.play_sec,
        billable_sec=piece.billable_sec,
        amount=piece.amount,
    )


def _correction(adjustment: Adjustment) -> Correction:
    return Correction(
        adjustment_id=adjustment.adjustment_id or 0,
        game_id=adjustment.game_id,
        game_session_id=adjustment.game_session_id,
        seconds=adjustment.seconds,
        amount=adjustment.amount,
        reason=adjustment.reason,
        created_by=adjustment.created_by,
        created_at=adjustment.created_at,
    )


class _LineBuffer:
    """Detail lines waiting to be written by the closing transaction, flushed a page at a time."""

    def __init__(self, writer: SettlementWriter | None, page_size: int) -> None:
        self.writer = writer
        self.page_size = page_size
        self.lines: list[DetailLine] = []

    async def add(self, line: DetailLine) -> None:
        if self.writer is None:
            return
        self.lines.append(line)
        if len(self.lines) >= self.page_size:
            await self.flush()

    async def flush(self) -> None:
        if self.writer is not None and self.lines:
            await self.writer.insert_lines(self.lines)
            self.lines = []


class _Progress:
    def __init__(self, callback: ProgressCallback | None, total: int, step: int) -> None:
        self.callback = callback
        self.total = total
        self.step = step
        self.done = 0

    def advance(self) -> None:
        self.done += 1
        if self.callback is not None and (self.done % self.step == 0 or self.done == self.total):
            self.callback(self.done, self.total)


class Settlements:
    """Settlement use cases over the records database."""

    def __init__(self, store: SqlSettlementStore, clock: Clock, timezone: str) -> None:
        zone(timezone)
        self.store = store
        self.clock = clock
        self.timezone = timezone

    async def first_open_month(self) -> Month:
        """Return the month after the last closed one, or the current month if none is closed."""
        async with self.store.reading() as reader:
            closed = await reader.closed_statements()
        if closed:
            return Month.parse(closed[-1].month).next()
        return month_containing(self.clock.now(), self.timezone)

    async def statement(
        self, month: Month, *, progress: ProgressCallback | None = None
    ) -> StatementExport:
        """Compute an open month as of now, or return a closed month's stored exports."""
        async with self.store.reading() as reader:
            stored = await reader.closed_statement(str(month))
            if stored is not None:
                return _stored_export(stored)
            statement = await self._compute(reader, None, month, progress)
        log.info(
            "settlement_computed",
            month=str(month),
            games=len(statement.games),
            total_amount=statement.totals["total_amount"],
        )
        return _export(statement, closed=False)

    async def close(
        self, month: Month, *, progress: ProgressCallback | None = None
    ) -> StatementExport:
        """Close `month`: store its statement, exports and settled lines, all in one transaction.

        Closing a month that is already closed returns the stored statement unchanged.
        """
        now = self.clock.now()
        _start, end = month_bounds(month, self.timezone)
        if now < end:
            closable_from = local_iso(end, self.timezone)
            raise SettlementError(f"month {month} is not over yet; close it from {closable_from}")

        async with self.store.closing() as writer:
            stored = await writer.closed_statement(str(month))
            if stored is not None:
                log.info("settlement_already_closed", month=str(month), checksum=stored.checksum)
                return _stored_export(stored)

            closed = await writer.closed_statements()
            if closed and Month.parse(closed[-1].month).next() != month:
                raise SettlementError(
                    f"month {month} cannot be closed: months close in order, and the next month "
                    f"to close is {Month.parse(closed[-1].month).next()}"
                )

            statement = await self._compute(writer, writer, month, progress, now=now)
            statement = dataclasses.replace(statement, status="closed")
            export = _export(statement, closed=True)
            await writer.insert_game_lines(
                [{"month": str(month), **dataclasses.asdict(line)} for line in statement.games]
            )
            await writer.insert_statement(
                ClosedStatement(
                    month=str(month),
                    timezone=self.timezone,
                    period_start=statement.period_start,
                    period_end=statement.period_end,
                    closed_at=now,
                    summary_json=export.json_text,
                    summary_csv=export.csv_text,
                    checksum=export.checksum,
                ),
                {
                    "sessions": statement.totals["sessions"],
                    "open_sessions": statement.totals["open_sessions"],
                    "total_billable_sec": statement.totals["total_billable_sec"],
                    "total_amount": statement.totals["total_amount"],
                },
            )

        log.info(
            "settlement_closed",
            month=str(month),
            games=len(statement.games),
            total_amount=statement.totals["total_amount"],
            checksum=export.checksum,
        )
        return export

    async def _compute(
        self,
        reader: SettlementReader,
        writer: SettlementWriter | None,
        month: Month,
        progress: ProgressCallback | None,
        *,
        now: Millis | None = None,
    ) -> Statement:
        """Compute `month` from one snapshot; with `writer`, also store its settled lines."""
        start, end = month_bounds(month, self.timezone)
        closed = await reader.closed_statements()
        self._check_timezone(closed)
        closed_months = {statement.month for statement in closed}
        settles_late_ends = bool(closed) and Month.parse(closed[-1].month).next() == month

        total = 0
        if progress is not None:
            total = await reader.count_month_sessions(start, end)
            if settles_late_ends:
                total += await reader.count_late_sessions(
                    closed[0].period_start, closed[-1].period_end
                )
        counter = _Progress(progress, total, step=max(1, reader.page_size))
        buffer = _LineBuffer(writer, reader.page_size)

        play: Tally[str] = Tally()
        async for session in reader.month_sessions(start, end):
            counter.advance()
            piece = _piece_in(session, month, self.timezone)
            if piece is None:
                continue
            play.add(session.game_id, session.provider_user_id, piece)
            if writer is not None:
                await buffer.add(_detail_line(month, "play", session, piece))

        late: Tally[tuple[str, str]] = Tally()
        if settles_late_ends:
            sessions = reader.late_sessions(closed[0].period_start, closed[-1].period_end)
            async for session in sessions:
                counter.advance()
                for piece in _pieces(session, self.timezone):
                    if str(piece.month) not in closed_months:
                        continue
                    late.add((session.game_id, str(piece.month)), session.provider_user_id, piece)
                    await buffer.add(_detail_line(month, "late_end", session, piece))
        await buffer.flush()

        corrections = [_correction(item) for item in await reader.adjustments(str(month))]
        game_lines = build_game_lines(
            await reader.game_names(),
            play.finish(),
            late.finish(),
            corrections,
            await reader.open_sessions(end),
        )
        return Statement(
            month=str(month),
            timezone=self.timezone,
            period_start=start,
            period_end=end,
            status="open",
            computed_at=self.clock.now() if now is None else now,
            games=game_lines,
            late_ends=_late_end_lines(late.lines),
            corrections=corrections,
            totals=sum_lines(game_lines, play.unique_users),
        )

    def _check_timezone(self, closed: list[ClosedStatement]) -> None:
        # Late ends are matched to closed months by splitting sessions again, which only agrees
        # with the stored months when both use the same time zone.
        if closed and closed[-1].timezone != self.timezone:
            raise SettlementError(
                f"settlement time zone is {self.timezone}, but closed months use "
                f"{closed[-1].timezone}; set PLAYWAVE_SETTLEMENT_TIMEZONE={closed[-1].timezone}"
            )

    async def write_detail(
        self,
        month: Month,
        out: TextIO,
        export_format: ExportFormat,
        *,
        game_id: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Write the per-session detail of `month` to `out`; return the number of rows.

        CSV has a header row; JSON is JSON Lines, one object per row. Rows are the month's own
        play ("play"), late ends ("late_end") and operator corrections ("correction"). A closed
        month's rows come from its stored lines, so they never change.
        """
        emit = _detail_writer(out, export_format)
        count = 0
        async with self.store.reading() as reader:
            async for row in self._detail_rows(reader, month, game_id, progress):
                emit(row)
                count += 1
        return count

    async def _detail_rows(
        self,
        reader: SettlementReader,
        month: Month,
        game_id: str | None,
        progress: ProgressCallback | None,
    ) -> AsyncIterator[dict[str, Any]]:
        stored = await reader.closed_statement(str(month))
        if stored is not None:
            async for line in reader.detail_lines(str(month), game_id):
                yield _detail_row(line)
        else:
            async for line in self._open_detail_lines(reader, month, progress):
                if game_id is None or line.game_id == game_id:
                    yield _detail_row(line)

        for adjustment in await reader.adjustments(str(month)):
            if game_id is None or adjustment.game_id == game_id:
                yield _correction_row(adjustment)

    async def _open_detail_lines(
        self, reader: SettlementReader, month: Month, progress: ProgressCallback | None
    ) -> AsyncIterator[DetailLine]:
        start, end = month_bounds(month, self.timezone)
        closed = await reader.closed_statements()
        self._check_timezone(closed)
        closed_months = {statement.month for statement in closed}
        settles_late_ends = bool(closed) and Month.parse(closed[-1].month).next() == month

        total = await reader.count_month_sessions(start, end) if progress is not None else 0
        counter = _Progress(progress, total, step=max(1, reader.page_size))
        async for session in reader.month_sessions(start, end, by_user=False):
            counter.advance()
            piece = _piece_in(session, month, self.timezone)
            if piece is not None:
                yield _detail_line(month, "play", session, piece)

        if settles_late_ends:
            sessions = reader.late_sessions(
                closed[0].period_start, closed[-1].period_end, by_user=False
            )
            async for session in sessions:
                for piece in _pieces(session, self.timezone):
                    if str(piece.month) in closed_months:
                        yield _detail_line(month, "late_end", session, piece)

    async def adjust(
        self,
        *,
        game_id: str,
        seconds: int,
        reason: str,
        created_by: str,
        month: Month | None = None,
        game_session_id: str | None = None,
        amount: int | None = None,
    ) -> Adjustment:
        """Record an operator correction of billable seconds (and amount) on an open month.

        The month defaults to the first open month. Without `amount`, the amount is the charge
        of `seconds` at the session's rate (or the game's rate when no session is named),
        rounded down toward zero, with the sign of `seconds`.
        """
        reason = reason.strip()
        created_by = created_by.strip()
        if not reason:
            raise SettlementError("reason must not be empty: say why the correction is made")
        if not created_by:
            raise SettlementError("created_by must not be empty: name who makes the correction")

        if await self.store.game_rate(game_id) is None:
            raise SettlementError(f"game {game_id} was not found")

        rate = await self._rate_for(game_id, game_session_id)
        if amount is None:
            amount = charge_for(abs(seconds), rate) * (1 if seconds >= 0 else -1)
        target = month or await self.first_open_month()

        adjustment = await self.store.add_adjustment(
            Adjustment(
                adjustment_id=None,
                month=str(target),
                game_id=game_id,
                game_session_id=game_session_id,
                seconds=seconds,
                amount=amount,
                reason=reason,
                created_by=created_by,
                created_at=self.clock.now(),
            )
        )
        log.info(
            "settlement_adjustment_added",
            adjustment_id=adjustment.adjustment_id,
            month=adjustment.month,
            game_id=game_id,
            game_session_id=game_session_id,
            seconds=seconds,
            amount=amount,
            created_by=created_by,
        )
        return adjustment

    async def _rate_for(self, game_id: str, game_session_id: str | None) -> int:
        if game_session_id is None:
            return await self.store.game_rate(game_id) or 0

        session = await self.store.get_session(game_session_id)
        if session is None:
            raise SettlementError(f"game session {game_session_id} was not found")
        if session.game_id != game_id:
            raise SettlementError(
                f"game session {game_session_id} belongs to game {session.game_id}, not {game_id}"
            )
        return session.rate_per_hour


def _stored_export(stored: ClosedStatement) -> StatementExport:
    document = json.loads(stored.summary_json)
    statement = statement_from_document(document, (stored.period_start, stored.period_end))
    if _checksum(stored.summary_json, stored.summary_csv) != stored.checksum:
        raise SettlementError(
            f"stored statement of {stored.month} does not match its checksum; "
            "the settlement tables were changed outside PlayWave"
        )
    return StatementExport(
        statement, stored.summary_json, stored.summary_csv, stored.checksum, closed=True
    )


def _late_end_lines(lines: dict[tuple[str, str], LineTotals]) -> list[LateEndLine]:
    return [
        LateEndLine(
            game_id=game_id,
            service_month=service_month,
            sessions=totals.sessions,
            unique_users=totals.unique_users,
            play_sec=totals.play_sec,
            billable_sec=totals.billable_sec,
            amount=totals.amount,
        )
        for (game_id, service_month), totals in sorted(lines.items())
    ]


def _detail_row(line: DetailLine) -> dict[str, Any]:
    return {
        "month": line.month,
        "kind": line.kind,
        "service_month": line.service_month,
        "game_id": line.game_id,
        "game_session_id": line.game_session_id,
        "provider_user_id": line.provider_user_id,
        "started_at": to_iso(line.started_at),
        "ended_at": to_iso(line.ended_at),
        "rate_per_hour": line.rate_per_hour,
        "play_sec": line.play_sec,
        "billable_sec": line.billable_sec,
        "amount": line.amount,
        "adjustment_id": None,
        "reason": None,
        "created_by": None,
    }


def _correction_row(adjustment: Adjustment) -> dict[str, Any]:
    return {
        "month": adjustment.month,
        "kind": "correction",
        "service_month": adjustment.month,
        "game_id": adjustment.game_id,
        "game_session_id": adjustment.game_session_id,
        "provider_user_id": None,
        "started_at": None,
        "ended_at": None,
        "rate_per_hour": None,
        "play_sec": None,
        "billable_sec": adjustment.seconds,
        "amount": adjustment.amount,
        "adjustment_id": adjustment.adjustment_id,
        "reason": adjustment.reason,
        "created_by": adjustment.created_by,
    }


def _detail_writer(out: TextIO, export_format: ExportFormat) -> Callable[[dict[str, Any]], None]:
    if export_format == "json":

        def emit_json(row: dict[str, Any]) -> None:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")

        return emit_json

    writer = csv.DictWriter(out, fieldnames=DETAIL_FIELDS, lineterminator="\n")
    writer.writeheader()
    return writer.writerow
