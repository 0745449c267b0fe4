"""`playwave partner-sim`: run the partner simulator as its own HTTP service."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from playwave.cli.common import console, fail
from playwave.cli.i18n import language
from playwave.logs import configure_logging
from playwave.partner.sandbox import DEFAULT_PRICE_PER_HOUR

MESSAGES: dict[str, tuple[str, str]] = {
    "listening": (
        "Partner simulator on http://{host}:{port} (wallets: {path}; faults: {faults})",
        "파트너 시뮬레이터 실행 중: http://{host}:{port} (지갑: {path}, 장애 주입: {faults})",
    ),
    "invalid_faults": (
        "Invalid fault settings: {detail}",
        "장애 주입 설정이 잘못되었습니다: {detail}",
    ),
}


def _t(message_id: str, **values: object) -> str:
    english, korean = MESSAGES[message_id]
    return (korean if language() == "ko" else english).format(**values)


def register(app: typer.Typer, sandbox_app: typer.Typer) -> None:
    app.command("partner-sim")(partner_sim)


def partner_sim(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8900, "--port", min=1, max=65535, help="TCP port to listen on."),
    data_dir: Path = typer.Option(
        Path("playwave-partner-sim"),
        "--data-dir",
        help="Directory of the simulator's SQLite wallet file.",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="PLAYWAVE_PARTNER_SIM_TOKEN",
        help="Bearer token every request must carry; unset accepts any request.",
    ),
    latency_ms: int = typer.Option(
        0, "--latency-ms", min=0, help="Delay added to every partner request, in milliseconds."
    ),
    error_rate: float = typer.Option(
        0.0, "--error-rate", help="Share of partner requests answered 500 before applying (0-1)."
    ),
    timeout_rate: float = typer.Option(
        0.0,
        "--timeout-rate",
        help="Share of partner requests that sleep --timeout-sec before being applied (0-1).",
    ),
    timeout_sec: float = typer.Option(
        10.0, "--timeout-sec", min=0, help="Sleep of a timed-out request, in seconds."
    ),
    error_after_commit_rate: float = typer.Option(
        0.0,
        "--error-after-commit-rate",
        help="Share of mutating requests applied and then answered 500 (0-1).",
    ),
    down: bool = typer.Option(False, "--down", help="Start down: answer 503 to every request."),
    price_per_hour: int = typer.Option(
        DEFAULT_PRICE_PER_HOUR,
        "--price-per-hour",
        min=0,
        help="G-coin per hour of play for games without their own price.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the fault draws."),
    demo_cafe: bool = typer.Option(
        True, "--demo-cafe/--no-demo-cafe", help="Treat loopback IPs as the sandbox demo cafe."
    ),
) -> None:
    """Run the PC cafe partner simulator: G-coin wallets over HTTP, with injectable faults."""
    import uvicorn

    from playwave.partner.simulator import DATABASE_FILE, Faults, create_simulator_app

    configure_logging(
        os.environ.get("PLAYWAVE_LOG_LEVEL", "INFO"),
        json=os.environ.get("PLAYWAVE_LOG_JSON", "true").lower() not in ("0", "false", "no"),
    )
    faults = Faults(
        latency_ms=latency_ms,
        error_rate=error_rate,
        timeout_rate=timeout_rate,
        timeout_sec=timeout_sec,
        error_after_commit_rate=error_after_commit_rate,
        down=down,
    )
    try:
        faults.validate()
    except ValueError as error:
        fail(_t("invalid_faults", detail=error))

    app = create_simulator_app(
        data_dir=data_dir,
        faults=faults,
        token=token,
        seed=seed,
        price_per_hour=price_per_hour,
        demo_cafe=demo_cafe,
    )
    summary = ", ".join(f"{name}={value}" for name, value in vars(faults).items())
    console.print(
        _t("listening", host=host, port=port, path=data_dir / DATABASE_FILE, faults=summary),
        highlight=False,
    )
    uvicorn.run(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5)
