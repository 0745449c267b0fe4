"""`playwave settle`: compute, close and export monthly settlements, and record corrections.

Exports go to stdout (or --output); progress and messages go to stderr, so a redirected export
contains nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from playwave import ids
from playwave.cli.common import error_console, fail, print_json, run
from playwave.cli.i18n import language
from playwave.clock import to_iso
from playwave.domain.settlement import Month
from playwave.runtime import Runtime
from playwave.services.settlement import (
    ExportFormat,
    Settlements,
    StatementExport,
    render_csv,
    render_json,
)
from playwave.stores.sql.settlement import MonthClosed, SqlSettlementStore

MESSAGES: dict[str, tuple[str, str]] = {
    "month_required": (
        "--month is required, for example: playwave settle --month 2026-01",
        "--month가 필요합니다. 예: playwave settle --month 2026-01",
    ),
    "format_invalid": (
        "--format must be csv or json, not {value!r}.",
        "--format은 csv 또는 json이어야 합니다 ({value!r}은(는) 사용할 수 없습니다).",
    ),
    "progress": ("Settling {month}", "{month} 정산 중"),
    "open_month": (
        "{month} is open: figures as of {at}. {open_sessions} sessions still live are settled "
        "once they end.",
        "{month}은(는) 마감 전입니다: {at} 기준 수치입니다. 진행 중인 세션 {open_sessions}개는 "
        "끝난 뒤 정산됩니다.",
    ),
    "closed_month": (
        "{month} is closed (checksum {checksum}); this is the stored statement.",
        "{month}은(는) 마감되었습니다 (체크섬 {checksum}). 저장된 정산서입니다.",
    ),
    "written": ("Wrote {path}.", "{path}에 저장했습니다."),
    "detail_written": ("{rows} detail rows written.", "상세 행 {rows}개를 출력했습니다."),
    "adjustment_added": (
        "Adjustment {adjustment_id} added to {month} for {game_id}: {seconds} s, amount {amount}.",
        "{month}의 {game_id}에 조정 {adjustment_id}을(를) 추가했습니다: "
        "{seconds}초, 금액 {amount}.",
    ),
    "month_closed": (
        "Month {month} is closed and cannot change; add the adjustment to an open month.",
        "{month}은(는) 마감되어 바꿀 수 없습니다. 마감되지 않은 달에 조정을 추가하세요.",
    ),
}


def message(message_id: str, **values: object) -> str:
    """Return a settlement message in the operator's language (see `playwave.cli.i18n`)."""
    english, korean = MESSAGES[message_id]
    template = korean if language() == "ko" else english
    return template.format(**values)


@asynccontextmanager
async def settlements_for(runtime: Runtime) -> AsyncIterator[Settlements]:
    """Open the settlement service on the runtime's records database."""
    store = SqlSettlementStore.beside(runtime.records.engine)  # type: ignore[attr-defined]
    try:
        yield Settlements(store, runtime.clock, runtime.settings.settlement_timezone)
    finally:
        await store.close()


def _parse_month(text: str | None) -> Month:
    if text is None:
        fail(message("month_required"))
    try:
        return Month.parse(text)
    except ValueError as error:
        return fail(str(error))


def _check_format(value: str) -> ExportFormat:
    if value not in ("csv", "json"):
        fail(message("format_invalid", value=value))
    return value  # type: ignore[return-value]


@contextmanager
def _progress(month: Month) -> Iterator[Callable[[int, int], None]]:
    """Show a progress bar on stderr while a month is streamed."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console,
        transient=True,
    )
    task = progress.add_task(message("progress", month=month), total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def _summary_text(export: StatementExport, export_format: ExportFormat, game: str | None) -> str:
    if game is None:
        return export.text(export_format)
    statement = export.statement.for_game(game)
    return render_json(statement) if export_format == "json" else render_csv(statement)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    error_console.print(message("written", path=output), highlight=False)


def settle(
    ctx: typer.Context,
    month: str | None = typer.Option(None, "--month", help="Month to settle, as YYYY-MM."),
    game: str | None = typer.Option(None, "--game", help="Only this game_id."),
    close: bool = typer.Option(
        False, "--close", help="Close the month: store its statement for good."
    ),
    export_format: str = typer.Option("csv", "--format", help="Export format: csv or json."),
    output: Path | None = typer.Option(
        None, "--output", help="Write the export to this file instead of stdout."
    ),
    detail: bool = typer.Option(
        False,
        "--detail",
        help="Export one row per session piece and adjustment instead of one row per game "
        "(JSON is then JSON Lines).",
    ),
) -> None:
    """Compute a month's settlement per game, optionally close it, and export it.

    Months are calendar months in PLAYWAVE_SETTLEMENT_TIMEZONE (Asia/Seoul by default).
    """
    if ctx.invoked_subcommand is not None:
        return
    target = _parse_month(month)
    chosen_format = _check_format(export_format)
    if game is not None and not ids.GAME_ID.fullmatch(game):
        fail(f"--game {game!r} is not a game id (game_ followed by 12 hex digits)")

    async def work(runtime: Runtime) -> StatementExport:
        async with settlements_for(runtime) as service:
            with _progress(target) as progress:
                if close:
                    return await service.close(target, progress=progress)
                return await service.statement(target, progress=progress)

    export = run(work)
    if export.closed:
        error_console.print(
            message("closed_month", month=target, checksum=export.checksum), highlight=False
        )
    else:
        error_console.print(
            message(
                "open_month",
                month=target,
                at=to_iso(export.statement.computed_at),
                open_sessions=export.statement.totals["open_sessions"],
            ),
            highlight=False,
        )

    if not detail:
        _write(_summary_text(export, chosen_format, game), output)
        return

    async def write_detail(runtime: Runtime) -> int:
        async with settlements_for(runtime) as service:
            with _progress(target) as progress:
                if output is None:
                    return await service.write_detail(
                        target, sys.stdout, chosen_format, game_id=game, progress=progress
                    )
                with output.open("w", encoding="utf-8", newline="") as stream:
                    return await service.write_detail(
                        target, stream, chosen_format, game_id=game, progress=progress
                    )

    rows = run(write_detail)
    error_console.print(message("detail_written", rows=rows), highlight=False)
    if output is not None:
        error_console.print(message("written", path=output), highlight=False)


def adjust(
    game: str = typer.Option(..., "--game", help="game_id the correction applies to."),
    seconds: int = typer.Option(
        ..., "--seconds", help="Billable seconds to add (negative to remove)."
    ),
    reason: str = typer.Option(..., "--reason", help="Why the correction is made."),
    created_by: str = typer.Option(..., "--by", help="Who makes the correction."),
    month: str | None = typer.Option(
        None, "--month", help="Open month to adjust, as YYYY-MM (default: first open month)."
    ),
    session: str | None = typer.Option(None, "--session", help="gs_... the correction is for."),
    amount: int | None = typer.Option(
        None,
        "--amount",
        help="Amount in KRW (default: the seconds at the session's or game's rate, rounded down).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Record an operator correction as an adjustment entry of an open month."""
    target = _parse_month(month) if month is not None else None
    if session is not None and not ids.GAME_SESSION_ID.fullmatch(session):
        fail(f"--session {session!r} is not a game session id (gs_ followed by a UUID)")

    async def work(runtime: Runtime) -> Any:
        try:
            async with settlements_for(runtime) as service:
                return await service.adjust(
                    game_id=game,
                    seconds=seconds,
                    reason=reason,
                    created_by=created_by,
                    month=target,
                    game_session_id=session,
                    amount=amount,
                )
        except MonthClosed as error:
            fail(message("month_closed", month=error.month))

    adjustment = run(work)
    if json_output:
        print_json(
            {
                "adjustment_id": adjustment.adjustment_id,
                "month": adjustment.month,
                "game_id": adjustment.game_id,
                "game_session_id": adjustment.game_session_id,
                "seconds": adjustment.seconds,
                "amount": adjustment.amount,
                "reason": adjustment.reason,
                "created_by": adjustment.created_by,
                "created_at": to_iso(adjustment.created_at),
            }
        )
        return
    error_console.print(
        message(
            "adjustment_added",
            adjustment_id=adjustment.adjustment_id,
            month=adjustment.month,
            game_id=adjustment.game_id,
            seconds=adjustment.seconds,
            amount=adjustment.amount,
        ),
        highlight=False,
    )


def register(app: typer.Typer, sandbox_app: typer.Typer) -> None:
    """Attach `playwave settle` and `playwave settle adjust` to the CLI."""
    settle_app = typer.Typer(
        help="Monthly settlement per game. / 월별 게임 정산",
        invoke_without_command=True,
        no_args_is_help=False,
    )
    settle_app.callback()(settle)
    settle_app.command("adjust")(adjust)
    app.add_typer(settle_app, name="settle")
