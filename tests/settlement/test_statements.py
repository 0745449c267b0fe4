"""Computing, closing and exporting months on the embedded SQLite records."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from playwave.clock import ManualClock
from playwave.domain.settlement import Month, month_bounds
from playwave.runtime import Runtime
from playwave.services.settlement import SettlementError, Settlements
from playwave.stores.base import Game
from playwave.stores.sql.settlement import MonthClosed
from tests.settlement.conftest import AddSession, end_session, start_session

SEOUL = "Asia/Seoul"
JAN = Month(2026, 1)
FEB = Month(2026, 2)
MAR = Month(2026, 3)
JAN_START, FEB_START = month_bounds(JAN, SEOUL)
MAR_START = month_bounds(MAR, SEOUL)[0]
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def line_of(export, game_id):
    return next(line for line in export.statement.games if line.game_id == game_id)


async def test_boundary_session_splits_between_months(
    settlements: Settlements, add_session: AddSession, game: Game, clock: ManualClock
):
    await add_session(game.game_id, FEB_START - 10 * MINUTE, FEB_START + 20 * MINUTE)
    clock.set(MAR_START + DAY)

    january = line_of(await settlements.statement(JAN), game.game_id)
    february = line_of(await settlements.statement(FEB), game.game_id)

    assert (january.play_sec, january.billable_sec, january.amount) == (600, 600, 100)
    assert (february.play_sec, february.billable_sec, february.amount) == (1200, 1200, 200)
    assert january.sessions == february.sessions == 1


async def test_statement_counts_games_users_and_open_sessions(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game, clock
):
    other = Game("game_00000000000b", "Racing", 1200, True, JAN_START)
    await runtime.records.create_game(other)
    await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR, user="1")
    await add_session(game.game_id, JAN_START + 2 * DAY, JAN_START + 2 * DAY + HOUR, user="1")
    await add_session(game.game_id, JAN_START + 3 * DAY, JAN_START + 3 * DAY + HOUR, user="2")
    await add_session(
        other.game_id, JAN_START + DAY, JAN_START + DAY + 30 * MINUTE, user="2", rate_per_hour=1200
    )
    await start_session(runtime, game.game_id, JAN_START + 20 * DAY, user="3")
    clock.set(FEB_START + DAY)

    export = await settlements.statement(JAN)
    first, second = line_of(export, game.game_id), line_of(export, other.game_id)

    assert (first.sessions, first.unique_users, first.open_sessions) == (3, 2, 1)
    assert (first.play_sec, first.billable_sec, first.amount) == (10800, 10800, 1800)
    assert (second.sessions, second.unique_users, second.amount) == (1, 1, 600)
    assert first.game_name == "Obby Tower"
    assert export.statement.totals["unique_users"] == 2
    assert export.statement.totals["open_sessions"] == 1
    assert export.statement.totals["total_amount"] == 2400
    assert export.statement.status == "open"


async def test_exhausted_session_bills_until_exhaustion(
    settlements: Settlements, add_session: AddSession, game: Game, clock
):
    started = JAN_START + DAY
    await add_session(game.game_id, started, started + HOUR, exhausted_at=started + 30 * MINUTE)
    clock.set(FEB_START)

    line = line_of(await settlements.statement(JAN), game.game_id)

    assert line.play_sec == 3600
    assert line.billable_sec == 1800
    assert line.amount == 300


async def test_closed_month_unchanged_by_late_ends(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game, clock
):
    await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR)
    live_at_close = await start_session(runtime, game.game_id, FEB_START - HOUR, user="2")
    clock.set(FEB_START + DAY)

    closed = await settlements.close(JAN)
    assert closed.statement.totals["open_sessions"] == 1
    assert closed.statement.totals["total_amount"] == 600

    # Ends after the close: 60 min in January, 30 min in February.
    await end_session(runtime, live_at_close, FEB_START + 30 * MINUTE)
    again = await settlements.statement(JAN)
    closed_again = await settlements.close(JAN)

    assert again.json_text == closed.json_text
    assert again.csv_text == closed.csv_text
    assert again.checksum == closed.checksum
    assert closed_again.json_text == closed.json_text
    assert again.statement.status == "closed"

    clock.set(MAR_START + DAY)
    february = await settlements.statement(FEB)
    line = line_of(february, game.game_id)
    assert (line.sessions, line.play_sec, line.amount) == (1, 1800, 300)
    assert (line.late_end_sessions, line.late_end_play_sec, line.late_end_amount) == (
        1,
        3600,
        600,
    )
    assert line.total_amount == 900
    [late] = february.statement.late_ends
    assert (late.service_month, late.sessions, late.billable_sec) == ("2026-01", 1, 3600)


async def test_late_end_settled_only_once(
    settlements: Settlements, runtime: Runtime, game: Game, clock
):
    session = await start_session(runtime, game.game_id, FEB_START - HOUR)
    clock.set(FEB_START + DAY)
    await settlements.close(JAN)
    await end_session(runtime, session, FEB_START + HOUR)
    clock.set(MAR_START + DAY)

    february = await settlements.close(FEB)
    march = await settlements.statement(MAR)

    assert line_of(february, game.game_id).late_end_sessions == 1
    assert march.statement.games == []
    assert march.statement.late_ends == []


async def test_close_rejects_month_not_over(settlements: Settlements, clock):
    clock.set(FEB_START - 1)

    with pytest.raises(SettlementError, match="not over"):
        await settlements.close(JAN)


async def test_close_rejects_skipped_month(settlements: Settlements, clock):
    clock.set(month_bounds(Month(2026, 4), SEOUL)[0])
    await settlements.close(JAN)

    with pytest.raises(SettlementError, match="next month to close is 2026-02"):
        await settlements.close(MAR)


async def test_adjustment_recorded_with_reason_and_author(
    settlements: Settlements, add_session: AddSession, game: Game, clock
):
    session = await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR)
    clock.set(FEB_START + DAY)

    adjustment = await settlements.adjust(
        game_id=game.game_id,
        game_session_id=session.game_session_id,
        seconds=-600,
        reason="cafe outage, play refunded",
        created_by="ops@playwave",
        month=JAN,
    )

    assert adjustment.month == "2026-01"
    assert adjustment.amount == -100
    assert adjustment.adjustment_id is not None
    export = await settlements.statement(JAN)
    [correction] = export.statement.corrections
    assert correction.reason == "cafe outage, play refunded"
    assert correction.created_by == "ops@playwave"
    assert correction.game_session_id == session.game_session_id
    line = line_of(export, game.game_id)
    assert (line.correction_count, line.correction_sec, line.correction_amount) == (1, -600, -100)
    assert (line.total_billable_sec, line.total_amount) == (3000, 500)


async def test_adjustment_rejected_on_closed_month(settlements: Settlements, game: Game, clock):
    clock.set(FEB_START + DAY)
    await settlements.close(JAN)

    with pytest.raises(MonthClosed, match="2026-01 is closed"):
        await settlements.adjust(
            game_id=game.game_id, seconds=60, reason="late", created_by="ops", month=JAN
        )
    adjustment = await settlements.adjust(
        game_id=game.game_id, seconds=60, reason="late", created_by="ops"
    )
    assert adjustment.month == "2026-02"


async def test_adjustment_rejects_bad_input(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game
):
    other = Game("game_00000000000c", "Other", 60, True, JAN_START)
    await runtime.records.create_game(other)
    session = await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR)

    with pytest.raises(SettlementError, match="reason"):
        await settlements.adjust(game_id=game.game_id, seconds=1, reason=" ", created_by="ops")
    with pytest.raises(SettlementError, match="created_by"):
        await settlements.adjust(game_id=game.game_id, seconds=1, reason="x", created_by="")
    with pytest.raises(SettlementError, match="game game_ffffffffffff was not found"):
        await settlements.adjust(
            game_id="game_ffffffffffff", seconds=1, reason="x", created_by="ops"
        )
    with pytest.raises(SettlementError, match="belongs to game"):
        await settlements.adjust(
            game_id=other.game_id,
            game_session_id=session.game_session_id,
            seconds=1,
            reason="x",
            created_by="ops",
        )


async def test_exports_parse_back_to_totals(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game, clock
):
    other = Game("game_00000000000b", "Racing", 1000, True, JAN_START)
    await runtime.records.create_game(other)
    for index in range(7):
        started = JAN_START + index * DAY + index * 7_777
        await add_session(game.game_id, started, started + HOUR + index * 1_001, user=str(index))
        await add_session(
            other.game_id, started, started + 97_531 * (index + 1), user="9", rate_per_hour=1000
        )
    await add_session(game.game_id, FEB_START - 10 * MINUTE, FEB_START + 20 * MINUTE, user="5")
    clock.set(FEB_START + DAY)
    await settlements.adjust(
        game_id=other.game_id, seconds=-77, reason="x", created_by="ops", month=JAN
    )

    export = await settlements.statement(JAN)
    totals = json.loads(export.json_text)["totals"]
    rows = list(csv.DictReader(io.StringIO(export.csv_text)))

    assert len(rows) == 2
    for name, value in totals.items():
        if name != "unique_users":
            assert sum(int(row[name]) for row in rows) == value, name
    assert totals["unique_users"] == 8

    detail_csv, detail_json = io.StringIO(), io.StringIO()
    await settlements.write_detail(JAN, detail_csv, "csv")
    await settlements.write_detail(JAN, detail_json, "json")
    csv_rows = list(csv.DictReader(io.StringIO(detail_csv.getvalue())))
    json_rows = [json.loads(line) for line in detail_json.getvalue().splitlines()]

    assert len(csv_rows) == len(json_rows) == 16
    assert sum(int(row["billable_sec"]) for row in csv_rows) == totals["total_billable_sec"]
    assert sum(int(row["amount"]) for row in csv_rows) == totals["total_amount"]
    assert sum(row["billable_sec"] for row in json_rows) == totals["total_billable_sec"]
    assert sum(row["amount"] for row in json_rows) == totals["total_amount"]
    assert sum(1 for row in json_rows if row["kind"] == "play") == totals["sessions"]


async def test_detail_of_closed_month_matches_open_detail(
    settlements: Settlements, add_session: AddSession, game: Game, clock
):
    for index in range(5):
        started = JAN_START + index * DAY
        await add_session(game.game_id, started, started + HOUR, user=str(index))
    clock.set(FEB_START + DAY)
    before, after = io.StringIO(), io.StringIO()

    await settlements.write_detail(JAN, before, "csv")
    await settlements.close(JAN)
    await settlements.write_detail(JAN, after, "csv")

    assert after.getvalue() == before.getvalue()


async def test_game_filter_restricts_statement(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game, clock
):
    other = Game("game_00000000000b", "Racing", 1000, True, JAN_START)
    await runtime.records.create_game(other)
    await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR)
    await add_session(other.game_id, JAN_START + DAY, JAN_START + DAY + HOUR, user="2")
    clock.set(FEB_START + DAY)

    statement = (await settlements.statement(JAN)).statement.for_game(other.game_id)

    assert [line.game_id for line in statement.games] == [other.game_id]
    assert statement.totals["total_amount"] == 600


async def test_closed_tables_reject_changes(
    settlements: Settlements, add_session: AddSession, runtime: Runtime, game: Game, clock
):
    await add_session(game.game_id, JAN_START + DAY, JAN_START + DAY + HOUR)
    clock.set(FEB_START + DAY)
    await settlements.close(JAN)
    engine = runtime.records.engine

    statements = [
        "UPDATE settlement_statements SET total_amount = 0",
        "DELETE FROM settlement_statements",
        "UPDATE settlement_lines SET amount = 0",
        "DELETE FROM settlement_statement_games",
        "INSERT INTO settlement_adjustments (month, game_id, seconds, amount, reason, "
        "created_by, created_at) VALUES ('2026-01', 'game_00000000000a', 1, 1, 'x', 'y', 0)",
    ]
    for statement in statements:
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(text(statement))
    assert (await settlements.statement(JAN)).statement.totals["total_amount"] == 600


async def test_timezone_change_after_close_rejected(
    settlements: Settlements, runtime: Runtime, clock
):
    clock.set(FEB_START + DAY)
    await settlements.close(JAN)
    in_utc = Settlements(settlements.store, clock, "UTC")

    with pytest.raises(SettlementError, match="PLAYWAVE_SETTLEMENT_TIMEZONE=Asia/Seoul"):
        await in_utc.statement(FEB)
