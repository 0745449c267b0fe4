"""`playwave simulate`: a day of PC cafes, launchers and game servers against a running server."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import typer

from playwave.cli.common import console, error_console, fail, print_json
from playwave.cli.i18n import MESSAGES, t
from playwave.settings import Settings

MESSAGES.update(
    {
        "simulate_settings": (
            "Start the server with these settings (time scale {scale:g}: one real second is "
            "{scale:g} simulated seconds):",
            "서버를 다음 설정으로 시작하세요 (시간 배율 {scale:g}: 실제 1초가 시뮬레이션 "
            "{scale:g}초입니다):",
        ),
        "simulate_rounding": (
            "These timers do not divide evenly and were rounded: {notes}",
            "나누어떨어지지 않아 반올림한 타이머: {notes}",
        ),
        "simulate_setup_failed": (
            "The simulation could not start: {detail}",
            "시뮬레이션을 시작할 수 없습니다: {detail}",
        ),
        "simulate_done": (
            "Simulation {verdict}: {sessions} sessions, {violations} contract violations, "
            "{mismatches} billing mismatches. Report: {path}",
            "시뮬레이션 {verdict}: 세션 {sessions}개, 계약 위반 {violations}건, 과금 불일치 "
            "{mismatches}건. 보고서: {path}",
        ),
    }
)


def register(app: typer.Typer, sandbox_app: typer.Typer) -> None:
    app.command("simulate")(simulate)


def simulate(
    url: str = typer.Option(
        "http://127.0.0.1:8000", "--url", help="Base URL of the server; must be a loopback address."
    ),
    cafes: int = typer.Option(3, "--cafes", min=1, max=60_000, help="Number of PC cafes."),
    seats: int = typer.Option(10, "--seats", min=1, max=1000, help="PCs per cafe."),
    games: int = typer.Option(3, "--games", min=1, max=200, help="Number of games to create."),
    hours: float = typer.Option(1.0, "--hours", min=0.01, help="Simulated hours to run."),
    time_scale: float = typer.Option(
        60.0, "--time-scale", min=1.0, help="Simulated seconds per real second."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of every random choice."),
    out: Path = typer.Option(
        Path("simulation-report"),
        "--out",
        help="Directory for report.md, report.json, CSVs, chart.",
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="The server's data directory (default: PLAYWAVE_DATA_DIR)."
    ),
    max_in_flight: int = typer.Option(
        256, "--max-in-flight", min=1, help="Most requests in flight at once."
    ),
    print_settings: bool = typer.Option(
        False, "--print-settings", help="Print the server settings for --time-scale and exit."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Drive launchers and game servers of many PC cafes against a running server."""
    from playwave.simulate.client import NotLoopback, loopback_host
    from playwave.simulate.config import SimulationConfig, scaled_settings, timer_rounding

    settings_to_use = scaled_settings(time_scale)
    if print_settings:
        if json_output:
            print_json(settings_to_use)
            return
        console.print(t("simulate_settings", scale=time_scale), highlight=False)
        for name, value in settings_to_use.items():
            console.print(f"export {name}={value}", highlight=False)
        notes = timer_rounding(time_scale)
        if notes:
            console.print(t("simulate_rounding", notes="; ".join(notes)), highlight=False)
        return

    try:
        loopback_host(url)
    except NotLoopback as error:
        fail(t("invalid_value", detail=error))
    if importlib.util.find_spec("matplotlib") is None:
        # The chart is written at the end of a run; fail before the run instead of after it.
        fail(
            t(
                "invalid_value",
                detail="matplotlib is missing; install the 'simulate' extra: "
                "pip install 'playwave[simulate]'",
            ),
            code=2,
        )

    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = Settings(**overrides)
    config = SimulationConfig(
        url=url.rstrip("/"),
        cafes=cafes,
        seats=seats,
        games=games,
        hours=hours,
        time_scale=time_scale,
        seed=seed,
        out_dir=out,
        max_in_flight=max_in_flight,
    )
    error_console.print(t("simulate_settings", scale=time_scale), highlight=False)
    for name, value in settings_to_use.items():
        error_console.print(f"  {name}={value}", highlight=False)

    summary = _run(config, settings, show_progress=not json_output)
    verdict = "passed" if summary["passed"] else "FAILED"
    if json_output:
        print_json(summary)
    else:
        console.print(
            t(
                "simulate_done",
                verdict=verdict,
                sessions=summary["sessions"],
                violations=summary["contract_violations"],
                mismatches=summary["billing_mismatches"],
                path=out / "report.md",
            ),
            highlight=False,
        )
    if not summary["passed"]:
        raise typer.Exit(1)


def _run(config, settings: Settings, *, show_progress: bool) -> dict:
    from playwave.logs import configure_logging
    from playwave.simulate.client import NotLoopback
    from playwave.simulate.engine import run_simulation
    from playwave.simulate.report import write_report
    from playwave.simulate.setup import SetupError

    configure_logging(os.environ.get("PLAYWAVE_LOG_LEVEL", "WARNING"), json=True)
    # uvloop, installed with uvicorn's standard extra where it builds, makes each simulated
    # request cheaper, so one process drives more cafes.
    run = asyncio.run
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        run = uvloop.run
    try:
        result = run(
            run_simulation(config, settings, console=error_console if show_progress else None)
        )
    except (SetupError, NotLoopback) as error:
        fail(t("simulate_setup_failed", detail=error), code=2)
        raise
    return write_report(result, config.out_dir)
