"""The `playwave` command."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import signal

import typer

from playwave import ids
from playwave.cli.common import console, fail, print_json, run
from playwave.cli.i18n import t
from playwave.clock import to_iso
from playwave.logs import configure_logging
from playwave.runtime import Runtime
from playwave.settings import Settings
from playwave.stores.base import Game, OttGrant
from playwave.stores.sql.engine import upgrade_schema

app = typer.Typer(
    name="playwave",
    help="PlayWave server: PC cafe benefits for Roblox games. / PlayWave 서버",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema. / 데이터베이스 스키마", no_args_is_help=True)
games_app = typer.Typer(help="Games. / 게임", no_args_is_help=True)
keys_app = typer.Typer(help="Game server API keys. / 게임 서버 API 키", no_args_is_help=True)
sandbox_app = typer.Typer(help="Studio and partner sandbox. / 샌드박스", no_args_is_help=True)
sessions_app = typer.Typer(help="Game sessions. / 게임 세션", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(games_app, name="games")
app.add_typer(keys_app, name="keys")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(sessions_app, name="sessions")

JsonOption = typer.Option(False, "--json", help="Print one JSON object. / JSON으로 출력")


@app.callback()
def configure_cli_logging() -> None:
    """Send logs to stderr, so stdout carries only a command's result.

    One-shot commands log warnings and errors unless PLAYWAVE_LOG_LEVEL asks for more; `serve`
    and `worker` reconfigure with the settings' level.
    """
    configure_logging(os.environ.get("PLAYWAVE_LOG_LEVEL", "WARNING"), json=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="TCP port to listen on."),
    workers: int = typer.Option(1, min=1, help="Number of API processes."),
    jobs: bool | None = typer.Option(
        None,
        "--jobs/--no-jobs",
        help="Run background jobs in the API processes (default: on for the embedded default).",
    ),
) -> None:
    """Run the API server (and, on the embedded default, the background jobs)."""
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if settings.embedded and workers > 1:
        fail(t("invalid_value", detail="--workers above 1 needs PLAYWAVE_DATABASE_URL"))
    if settings.embedded:
        upgrade_schema(settings.sqlalchemy_url)

    mode = f"embedded SQLite in {settings.data_dir}" if settings.embedded else "PostgreSQL"
    console.print(t("serving", host=host, port=port, mode=mode), highlight=False)

    # Each API process builds its app from the environment, so the choice travels there.
    run_jobs = settings.embedded if jobs is None else jobs
    os.environ["PLAYWAVE_SERVE_JOBS"] = "1" if run_jobs else "0"
    options: dict[str, object] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # Several processes importing the app at once on a small machine can take longer than
        # uvicorn's default of 5 s to answer the supervisor's first health check.
        options["timeout_worker_healthcheck"] = 60
    uvicorn.run(
        "playwave.api.factory:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        timeout_graceful_shutdown=20,
        timeout_keep_alive=settings.keep_alive_sec,
        proxy_headers=False,
        **options,
    )


@app.command()
def worker() -> None:
    """Run the background jobs alone: expiry sweeps, launcher loss, partner queue."""
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)

    async def main(runtime: Runtime) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runtime.start_jobs()
        console.print(t("worker_started"))
        await stop.wait()
        await runtime.stop_jobs()

    run(main, settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations."""
    settings = Settings()
    upgrade_schema(settings.sqlalchemy_url)
    console.print(t("schema_upgraded"))


@games_app.command("create")
def games_create(
    name: str = typer.Option(..., "--name", help="Display name of the game."),
    rate_per_hour: int = typer.Option(
        0, "--rate-per-hour", min=0, help="Settlement rate in KRW per hour of billable play."
    ),
    roblox_place_id: int | None = typer.Option(None, "--place-id", help="Roblox place id."),
    json_output: bool = JsonOption,
) -> None:
    """Add a game and print its game_id."""
    if not name.strip():
        fail(t("invalid_value", detail="--name must not be empty"))

    async def work(runtime: Runtime) -> Game:
        game = Game(
            game_id=ids.new_game_id(),
            name=name.strip(),
            rate_per_hour=rate_per_hour,
            active=True,
            created_at=runtime.clock.now(),
            roblox_place_id=roblox_place_id,
        )
        await runtime.records.create_game(game)
        return game

    game = run(work)
    if json_output:
        print_json(
            {"game_id": game.game_id, "name": game.name, "rate_per_hour": game.rate_per_hour}
        )
    else:
        console.print(t("game_created", game_id=game.game_id, name=game.name), highlight=False)


@games_app.command("list")
def games_list(json_output: bool = JsonOption) -> None:
    """List games."""
    games = run(lambda runtime: runtime.records.list_games())
    if json_output:
        print_json(
            {
                "games": [
                    {
                        "game_id": g.game_id,
                        "name": g.name,
                        "rate_per_hour": g.rate_per_hour,
                        "active": g.active,
                    }
                    for g in games
                ]
            }
        )
        return
    if not games:
        console.print(t("no_games"))
    for game in games:
        state = "active" if game.active else "inactive"
        console.print(
            f"{game.game_id}  {game.name}  {game.rate_per_hour}/h  {state}", highlight=False
        )


@games_app.command("deactivate")
def games_deactivate(game_id: str = typer.Argument(..., help="The game to deactivate.")) -> None:
    """Deactivate a game: its keys stop working and launchers no longer list it."""
    if not run(lambda runtime: runtime.records.set_game_active(game_id, False)):
        fail(t("game_not_found", game_id=game_id))
    console.print(t("game_deactivated", game_id=game_id))


@keys_app.command("create")
def keys_create(
    game: str = typer.Option(..., "--game", help="game_id the key belongs to."),
    env: str = typer.Option(..., "--env", help="Environment: dev, qa or live."),
    json_output: bool = JsonOption,
) -> None:
    """Issue an API key; it is printed once and stored only as a keyed hash."""

    async def work(runtime: Runtime):
        try:
            return await runtime.api_keys.issue(game, env)
        except LookupError:
            fail(t("game_not_found", game_id=game))

    issued = run(work)
    if json_output:
        print_json(
            {
                "key_id": issued.key_id,
                "api_key": issued.api_key,
                "game_id": issued.game_id,
                "environment": issued.environment,
            }
        )
        return
    console.print(t("key_created", game_id=issued.game_id, environment=issued.environment))
    console.print(f"key_id:  {issued.key_id}\napi_key: {issued.api_key}", highlight=False)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., metavar="KEY_ID", help="key_id to revoke."),
    json_output: bool = JsonOption,
) -> None:
    """Revoke an API key; every server process rejects it within seconds."""
    if not run(lambda runtime: runtime.api_keys.revoke(key_id)):
        fail(t("key_not_found", key_id=key_id))
    if json_output:
        print_json({"key_id": key_id, "revoked": True})
        return
    console.print(t("key_revoked", key_id=key_id))


@keys_app.command("list")
def keys_list(
    game: str | None = typer.Option(None, "--game", help="Only this game's keys."),
    json_output: bool = JsonOption,
) -> None:
    """List API keys (ids only; secrets are never stored)."""
    keys = run(lambda runtime: runtime.records.list_api_keys(game))
    rows = [
        {
            "key_id": k.key_id,
            "game_id": k.game_id,
            "environment": k.environment,
            "created_at": to_iso(k.created_at),
            "revoked_at": to_iso(k.revoked_at) if k.revoked_at else None,
        }
        for k in keys
    ]
    if json_output:
        print_json({"keys": rows})
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        console.print(
            f"{row['key_id']}  {row['game_id']}  {row['environment']}  {state}", highlight=False
        )


@sandbox_app.command("ott")
def sandbox_ott(
    game: str = typer.Option(..., "--game", help="game_id the OTT is for."),
    pc: str = typer.Option("sandbox-pc", "--pc", help="PC id the session will run on."),
    json_output: bool = JsonOption,
) -> None:
    """Mint an OTT as a launcher would, to test a Roblox integration without a PC cafe."""
    from playwave.partner.sandbox import DEMO_CAFE_ID

    async def work(runtime: Runtime) -> OttGrant:
        found = await runtime.records.get_game(game)
        if found is None or not found.active:
            fail(t("game_not_found", game_id=game))
        grant = OttGrant.issue(
            game_id=game,
            pc_id=pc,
            cafe_id=DEMO_CAFE_ID,
            launcher_session_id=None,
            now=runtime.clock.now(),
            ttl_ms=runtime.settings.timers.ott_ttl_ms,
        )
        await runtime.live.put_ott(grant)
        return grant

    grant = run(work)
    expires_in = (grant.expires_at - grant.issued_at) // 1000
    payload = {
        "ott": grant.ott,
        "launch_data": ids.launch_data_for(grant.ott),
        "expires_in": expires_in,
        "game_id": grant.game_id,
        "pc_id": grant.pc_id,
    }
    if json_output:
        print_json(payload)
        return
    console.print(t("ott_minted", game_id=game, pc_id=pc, expires_in=expires_in))
    console.print(
        f"ott:         {grant.ott}\nlaunch_data: {payload['launch_data']}", highlight=False
    )


@sessions_app.command("end")
def sessions_end(
    game_session_id: str = typer.Argument(..., metavar="GAME_SESSION_ID", help="gs_... to end."),
    json_output: bool = JsonOption,
) -> None:
    """End a live session as an operator (end reason ADMIN_TERMINATED)."""
    if not ids.GAME_SESSION_ID.fullmatch(game_session_id):
        fail(t("invalid_value", detail=f"{game_session_id} is not a game session id"))
    ended = run(lambda runtime: runtime.sessions.terminate(game_session_id))
    if ended is None:
        fail(t("session_not_live", game_session_id=game_session_id))
    if json_output:
        print_json(
            {
                "game_session_id": game_session_id,
                "end_reason": ended.end_reason,
                "play_duration_sec": ended.play_duration_sec,
                "billable_sec": ended.billable_sec,
            }
        )
        return
    console.print(t("session_terminated", game_session_id=game_session_id, reason=ended.end_reason))


def _register_optional_commands() -> None:
    """Attach command groups whose modules define `register(app)`."""
    for module_name in (
        "playwave.cli.sandbox_cafes",
        "playwave.cli.launcher_keys",
        "playwave.cli.settle",
        "playwave.cli.partner_sim",
        "playwave.cli.simulate",
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(app, sandbox_app)


_register_optional_commands()


def main() -> None:
    app()
