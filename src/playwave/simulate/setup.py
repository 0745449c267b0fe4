"""Prepare a run through the admin functions, on the same data as the server.

The simulation first creates one launcher key, with which it checks the server; only then does
it create its own games (one live API key each) and one sandbox cafe per simulated cafe,
registered for the loopback address its launchers connect from. The server must use the
in-process sandbox partner, whose cafes live in the same database.
"""

from __future__ import annotations

from playwave import ids
from playwave.domain.billing import charge_for
from playwave.partner.sandbox import DEFAULT_PRICE_PER_HOUR, SandboxPartner
from playwave.runtime import Runtime
from playwave.services.launcher_keys import LauncherKeys
from playwave.simulate.config import SimulationConfig, cafe_ip
from playwave.simulate.world import SimCafe, SimGame
from playwave.stores.base import Game

GAME_NAMES = (
    "Obby Tower",
    "Pet Rally",
    "Sky Racers",
    "Dungeon Forge",
    "Tycoon Harbor",
    "Zombie Lab",
    "Parkour City",
    "Fishing Bay",
)
SIM_RATE_PER_HOUR = 600
# A well-funded cafe can pay for every seat for twice the whole run.
RICH_BALANCE_FACTOR = 2


class SetupError(RuntimeError):
    """The data the simulation needs could not be prepared."""


def cafe_balance(config: SimulationConfig, poor: bool) -> int:
    """Return a cafe's starting G-coin, in the server's real seconds of play.

    The partner charges per real second, so a simulated hour costs 1/scale of a real hour. A poor
    cafe can pay for `poor_cafe_seat_hours` simulated hours per seat and then runs out.
    """
    seat_hours = config.behaviour.poor_cafe_seat_hours if poor else config.hours
    factor = 1 if poor else RICH_BALANCE_FACTOR
    real_seconds = int(config.seats * seat_hours * 3600 * factor / config.time_scale)
    return charge_for(real_seconds, DEFAULT_PRICE_PER_HOUR) + 1


def launcher_keys_of(runtime: Runtime) -> LauncherKeys:
    return LauncherKeys(
        runtime.records, runtime.live, runtime.clock, runtime.settings.resolve_secret_key()
    )


async def issue_launcher_key(runtime: Runtime) -> tuple[str, str]:
    """Create the run's launcher key; return its id and secret."""
    if not isinstance(runtime.partner, SandboxPartner):
        raise SetupError(
            "simulate registers its cafes in the in-process sandbox partner, but "
            "PLAYWAVE_PARTNER_URL is set; unset it for the server and for simulate"
        )
    launcher_key, launcher_secret = await launcher_keys_of(runtime).issue()
    return launcher_key.key_id, launcher_secret


async def prepare(
    runtime: Runtime, config: SimulationConfig
) -> tuple[list[SimGame], list[SimCafe]]:
    """Create the games with their API keys and the sandbox cafes of one run."""
    partner = runtime.partner
    assert isinstance(partner, SandboxPartner)

    games = []
    run_tag = f"s{config.seed}"
    for index in range(config.games):
        base_name = GAME_NAMES[index % len(GAME_NAMES)]
        game = Game(
            game_id=ids.new_game_id(),
            name=f"{base_name} ({run_tag}-{index + 1})",
            rate_per_hour=SIM_RATE_PER_HOUR,
            active=True,
            created_at=runtime.clock.now(),
        )
        await runtime.records.create_game(game)
        issued = await runtime.api_keys.issue(game.game_id, "live")
        games.append(SimGame(game.game_id, game.name, issued.api_key, game.rate_per_hour))

    existing = {row["ip"]: row["cafe_id"] for row in await partner.list_cafes() if row["ip"]}
    poor_every = (
        round(1 / config.behaviour.poor_cafe_share) if config.behaviour.poor_cafe_share else 0
    )
    cafes = []
    for index in range(config.cafes):
        ip = cafe_ip(index)
        poor = bool(poor_every) and index % poor_every == poor_every - 1
        balance = cafe_balance(config, poor)
        cafe_id = existing.get(ip)
        if cafe_id is None:
            cafe = await partner.add_cafe(
                name=f"Sim PC Cafe {index + 1:03d}", ip=ip, balance=balance
            )
            cafe_id = cafe.cafe_id
        else:
            await partner.set_balance(cafe_id, balance)
            await partner.set_suspended(cafe_id, False)
        cafes.append(SimCafe(index, cafe_id, ip, poor))
    return games, cafes
