"""Seats, launchers and game sessions: the behaviour of one PC cafe seat over a day.

A seat's customer arrives, starts the launcher, plays a few games and leaves. Each game session
runs in its own task on the game server's side (verify, heartbeats, teleport checks, end), so a
session that was replaced keeps heartbeating until its game server learns of it, as a real one
does. Instances shut down (a burst of ends) or crash (no ends at all), and launchers crash.
Cafes run out of G-coin. Heartbeats arrive late, get lost, or stop for longer than the TTL.
"""

from __future__ import annotations

import asyncio
import random
from enum import StrEnum

from playwave.domain.lifecycle import EndReason
from playwave.simulate.client import Answer, LauncherApi
from playwave.simulate.clock import wall_ms
from playwave.simulate.ledger import LauncherTruth, SessionTruth
from playwave.simulate.world import GameInstance, SimCafe, SimGame, World, log, nap

RETRY_DELAY = 10.0
TRANSIENT_STATUSES = (0, 429, 500, 503)


class StopMode(StrEnum):
    END = "END"
    END_LATE = "END_LATE"
    CRASH = "CRASH"


class Launcher:
    """The launcher app of one PC: a signed session with a heartbeat task."""

    def __init__(self, world: World, seat: Seat) -> None:
        self.world = world
        self.seat = seat
        self.api = LauncherApi(
            world.cafe_endpoints[seat.cafe.index], world.launcher_key_id, world.launcher_secret
        )
        self.truth: LauncherTruth | None = None
        self.crashed = False
        self.closed = False
        self.lost = False
        self.interval = world.config.expected_timer("PLAYWAVE_LAUNCHER_HEARTBEAT_SEC")
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        world.launcher_apps.append(self)

    @property
    def running(self) -> bool:
        return self.truth is not None and not (self.crashed or self.closed or self.lost)

    async def start(self) -> bool:
        for _ in range(3):
            answer = await self.api.start(self.seat.pc_id, self.seat.internal_ip)
            if answer.ok:
                break
            if answer.status not in TRANSIENT_STATUSES:
                self.world.count(f"launcher_start_{answer.code}")
                return False
            await nap(self.world.clock, RETRY_DELAY, self.world.closing)
        else:
            return False

        self.truth = LauncherTruth(
            launcher_session_id=answer.data["launcher_session_id"],
            pc_id=self.seat.pc_id,
            started_ms=answer.sent_ms,
            last_confirmed_sent_ms=answer.sent_ms,
        )
        self.world.launchers.append(self.truth)
        self.interval = answer.data.get("heartbeat_interval_sec", self.interval)
        self.crashed = self.closed = self.lost = False
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._heartbeats())
        return True

    async def _heartbeats(self) -> None:
        clock = self.world.clock
        while True:
            if await nap(clock, self.interval * clock.scale, self._stop):
                return
            answer = await self.api.heartbeat()
            if answer.ok:
                assert self.truth is not None
                self.truth.last_confirmed_sent_ms = answer.sent_ms
                self.interval = answer.data.get("next_heartbeat_in", self.interval)
            elif answer.code == "LAUNCHER_SESSION_ENDED":
                self.lost = True
                self.world.count("launcher_found_ended")
                return

    async def stop_heartbeats(self) -> None:
        """Stop the heartbeat task without any call, when the run is over."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def crash(self) -> None:
        """Kill the launcher process: no more heartbeats and no end call."""
        self.crashed = True
        self._stop.set()
        self.world.count("launcher_crashed")

    async def end(self) -> None:
        self._stop.set()
        if self.truth is None or self.crashed or self.lost:
            return
        self.closed = True
        answer = await self.api.end()
        self.truth.closed_received_ms = answer.received_ms
        if not answer.ok:
            self.world.count(f"launcher_end_{answer.code}")

    def power_off(self) -> None:
        self._stop.set()
        self.crashed = True
        self.world.count("pc_powered_off")

    async def ott(self, game_id: str) -> Answer:
        return await self.api.ott(game_id)


class GameSessionRunner:
    """The game server's side of one session, from a valid verify to its end."""

    def __init__(
        self, world: World, seat: Seat, instance: GameInstance, truth: SessionTruth, rng
    ) -> None:
        self.world = world
        self.seat = seat
        self.instance = instance
        self.truth = truth
        self.rng: random.Random = rng
        self.wake = asyncio.Event()
        self.stop_mode: StopMode | None = None
        self.replaced_by_switch = False
        self.finished = asyncio.Event()
        self.stalled = False

    @property
    def game_session_id(self) -> str:
        return self.truth.game_session_id

    def request_stop(self, mode: StopMode) -> None:
        if self.stop_mode is None:
            self.stop_mode = mode
        self.wake.set()

    async def run(self) -> None:
        self.world.live_sessions += 1
        self.instance.sessions.add(self)
        try:
            await self._loop()
        finally:
            self.world.live_sessions -= 1
            self.instance.sessions.discard(self)
            self.finished.set()
            self.seat.wake.set()

    async def _loop(self) -> None:
        behaviour = self.world.behaviour
        delay = self.world.heartbeat_interval
        while True:
            delay = self._planted_delay(delay)
            if await nap(self.world.clock, delay, self.wake):
                self.wake.clear()
                if await self._stop_requested():
                    return
                continue

            if self.rng.random() < behaviour.lost_heartbeat:
                # The request never reaches the server; the game server retries after a timeout.
                self.world.count("heartbeat_lost")
                delay = behaviour.lost_heartbeat_retry
                continue

            teleport = self.rng.random() < behaviour.teleport
            delay = await self._heartbeat(teleport)
            if delay is None:
                return

    def _planted_delay(self, delay: float) -> float:
        behaviour = self.world.behaviour
        roll = self.rng.random()
        if roll < behaviour.stalled_game_server:
            # The game server stops sending for longer than the session TTL.
            self.stalled = True
            self.truth.planted_late_heartbeat = True
            self.world.count("heartbeat_stalled")
            return behaviour.stall_seconds
        if roll < behaviour.stalled_game_server + behaviour.late_heartbeat:
            self.world.count("heartbeat_late")
            return delay + self.rng.uniform(5.0, behaviour.late_heartbeat_max)
        return delay

    async def _stop_requested(self) -> bool:
        mode = self.stop_mode
        if mode is None:
            return False
        if mode is StopMode.CRASH:
            self.truth.finish(wall_ms(), self._expected_silent_end())
            return True
        if mode is StopMode.END_LATE:
            # The old game server of a switched PC calls end some time after the new verify.
            await nap(self.world.clock, self.rng.uniform(30.0, 90.0), self.world.closing)
        await self._end()
        return True

    def _expected_silent_end(self) -> EndReason:
        launcher = self.seat.launcher
        if launcher is not None and (launcher.crashed or launcher.lost):
            return EndReason.LAUNCHER_LOST
        return EndReason.HEARTBEAT_TIMEOUT

    async def _heartbeat(self, teleport: bool) -> float | None:
        """Send one heartbeat (or a teleport check); return the next delay, or None when over."""
        api = self.instance.api
        user = self.truth.provider_user_id
        if teleport:
            destination = self.world.other_instance(self.instance)
            self.instance.sessions.discard(self)
            self.instance = destination
            destination.sessions.add(self)
            answer = await destination.api.check(self.game_session_id, user)
            self.world.count("teleport_check")
        else:
            answer = await api.heartbeat(self.game_session_id, user)
        self.truth.contact(answer.received_ms)
        if not answer.ok:
            self.truth.note_heartbeat(answer.sent_ms, answer.received_ms, str(answer.code))

        if answer.ok:
            result = answer.data.get("result", "OK")
            if result == "SESSION_REPLACED":
                self.truth.finish(answer.received_ms, EndReason.SESSION_REPLACED)
                self.world.count("heartbeat_session_replaced")
                return None
            self.truth.confirm(answer.sent_ms, answer.received_ms)
            if result == "CHARGE_EXHAUSTED":
                self.truth.saw_exhausted = True
            advised = answer.data.get("next_heartbeat_in")
            if isinstance(advised, int) and advised > 0:
                return advised * self.world.clock.scale
            return self.world.heartbeat_interval

        if answer.code == "SESSION_ENDED":
            self.truth.finish(answer.received_ms, self._expected_server_end())
            return None
        if answer.code == "SESSION_ENDING":
            return 5.0
        if answer.code == "SESSION_NOT_FOUND":
            self.world.violation(
                answer.endpoint, 404, "SESSION_NOT_FOUND for a session this game server started"
            )
            self.truth.finish(answer.received_ms, None)
            return None
        return RETRY_DELAY

    def _expected_server_end(self) -> EndReason | None:
        """Return the end reason the simulation caused, or None when the end surprised it."""
        if self.truth.saw_exhausted:
            return EndReason.CHARGE_EXHAUSTED
        if self.stalled:
            return EndReason.HEARTBEAT_TIMEOUT
        if self.replaced_by_switch:
            return EndReason.SESSION_REPLACED
        launcher = self.seat.launcher
        if launcher is not None and (launcher.crashed or launcher.lost):
            return EndReason.LAUNCHER_LOST
        if launcher is not None and launcher.closed:
            return EndReason.LAUNCHER_CLOSED
        return None

    async def _end(self) -> None:
        """Call end with the play time the game server measured, retrying transient failures.

        The end call's window runs from the first attempt's clock read to the last response, or
        to the moment the attempt was cut off, because any attempt in it may be the one the
        server applied.
        """
        truth = self.truth
        try:
            for _ in range(3):
                # The call starts when the game server reads its clock: the request may then wait
                # for a free connection, and the server's count rightly includes that wait.
                measured_ms = wall_ms()
                if truth.end_sent_ms is None:
                    truth.end_sent_ms = measured_ms
                measured = max(0, measured_ms - truth.verify_received_ms) // 1000
                truth.client_play_duration_sec = measured

                answer = await self.instance.api.end(self.game_session_id, measured)
                truth.contact(answer.received_ms)
                truth.end_received_ms = answer.received_ms
                if answer.status in TRANSIENT_STATUSES:
                    await nap(self.world.clock, RETRY_DELAY, asyncio.Event())
                    continue

                truth.end_status = answer.status
                if answer.ok:
                    truth.end_play_duration_sec = answer.data.get("play_duration_sec")
                    truth.finish(answer.received_ms, EndReason.NORMAL)
                else:
                    if answer.code == "SESSION_NOT_FOUND":
                        self.world.violation(
                            "end", 404, "SESSION_NOT_FOUND for a session it started"
                        )
                    self.world.count(f"end_{answer.code}")
                    truth.finish(answer.received_ms, self._expected_server_end())
                return
        except asyncio.CancelledError:
            # Cut off at the end of the run: the request may still have reached the server.
            truth.end_received_ms = wall_ms()
            self.world.count("end_cut_off")
            raise
        truth.finish(wall_ms(), None)


class Seat:
    """One PC of a cafe and the customers who sit at it during the day."""

    def __init__(self, world: World, cafe: SimCafe, number: int) -> None:
        self.world = world
        self.cafe = cafe
        self.number = number
        self.pc_id = f"sim-{cafe.index:03d}-{number:03d}"
        self.internal_ip = f"192.168.{number // 250}.{number % 250 + 2}"
        self.rng = random.Random(f"{world.config.seed}:{cafe.index}:{number}")
        self.wake = asyncio.Event()
        self.launcher: Launcher | None = None
        self.session: GameSessionRunner | None = None
        self.tasks: set[asyncio.Task] = set()
        self.out_of_coin = False
        # Sessions of this PC that a later verify on the PC may replace.
        self.pc_sessions: list[SessionTruth] = []

    async def run(self) -> None:
        behaviour = self.world.behaviour
        if self.rng.random() < behaviour.initial_occupancy:
            # A short run keeps its opening to a sixth of the run, so most of it is a full cafe.
            opening = min(behaviour.opening_arrivals, self.world.config.simulated_seconds / 6)
            first_gap = self.rng.uniform(0.0, opening)
        else:
            first_gap = self.rng.expovariate(1 / behaviour.arrival_gap_mean)
        if await nap(self.world.clock, first_gap, self.world.closing):
            return

        while not self.world.closing.is_set():
            await self._visit()
            gap = self.rng.expovariate(1 / behaviour.arrival_gap_mean)
            if await nap(self.world.clock, gap, self.world.closing):
                break

    async def _visit(self) -> None:
        behaviour = self.world.behaviour
        clock = self.world.clock
        leave_at = clock.now() + self.rng.uniform(behaviour.visit_min, behaviour.visit_max)
        self.out_of_coin = False
        self.launcher = Launcher(self.world, self)
        if not await self.launcher.start():
            self.world.count("visit_without_launcher")
            return
        self.world.count("visits")

        crash_at = None
        if self.rng.random() < behaviour.launcher_crash_per_visit:
            crash_at = clock.now() + self.rng.uniform(0.0, leave_at - clock.now())

        while clock.now() < leave_at and not self.world.closing.is_set():
            menu = self.rng.uniform(behaviour.menu_min, behaviour.menu_max)
            if await nap(clock, menu, self.world.closing):
                break
            if not self.launcher.running and not await self._restart_launcher():
                break
            play_until = min(
                leave_at,
                clock.now()
                + max(
                    behaviour.game_session_min,
                    self.rng.expovariate(1 / behaviour.game_session_mean),
                ),
            )
            await self._play(self._pick_game(), play_until, crash_at)
            if self.out_of_coin:
                break
            if crash_at is not None and self.launcher.crashed:
                crash_at = None

        await self._leave()

    def _pick_game(self) -> SimGame:
        current = self.session.instance.game if self.session is not None else None
        if current is not None and self.rng.random() < self.world.behaviour.same_game_again:
            return current
        return self.rng.choice(self.world.games)

    async def _restart_launcher(self) -> bool:
        self.world.count("launcher_restarted")
        self.launcher = Launcher(self.world, self)
        return await self.launcher.start()

    async def _play(self, game: SimGame, play_until: float, crash_at: float | None) -> None:
        """Launch `game` and play it until `play_until` or until the session ends early."""
        assert self.launcher is not None
        runner = await self._launch(game)
        if runner is None:
            return
        clock = self.world.clock

        while not runner.finished.is_set() and clock.now() < play_until:
            if self.world.closing.is_set():
                break
            wake_at = play_until if crash_at is None else min(play_until, crash_at)
            self.wake.clear()
            await nap(clock, wake_at - clock.now(), self.wake)
            if self.world.closing.is_set():
                break
            if crash_at is not None and clock.now() >= crash_at and not self.launcher.crashed:
                self.launcher.crash()
                crash_at = None
        if runner.finished.is_set():
            if runner.truth.saw_exhausted:
                self.out_of_coin = True
            return

        behaviour = self.world.behaviour
        if not self.world.closing.is_set() and self.rng.random() < behaviour.switch_without_end:
            # The customer starts another game before this game server notices the player left:
            # the next verify on this PC replaces the session.
            runner.replaced_by_switch = True
            self.world.count("switched_without_end")
            if self.rng.random() < behaviour.replaced_server_calls_end:
                runner.request_stop(StopMode.END_LATE)
            return

        runner.request_stop(StopMode.END)
        await runner.finished.wait()

    async def _launch(self, game: SimGame) -> GameSessionRunner | None:
        """Get an OTT from the launcher and have a game server verify it."""
        assert self.launcher is not None
        behaviour = self.world.behaviour
        answer = await self.launcher.ott(game.game_id)
        if answer.code == "LAUNCHER_SESSION_ENDED" and await self._restart_launcher():
            answer = await self.launcher.ott(game.game_id)
        if not answer.ok:
            self.world.count(f"ott_{answer.code}")
            return None

        startup = self.rng.uniform(behaviour.roblox_startup_min, behaviour.roblox_startup_max)
        await nap(self.world.clock, startup, asyncio.Event())
        instance = self.world.instance_for(game)
        user = str(self.rng.randint(10_000_000, 9_999_999_999))
        verify = None
        first_sent_ms: int | None = None
        for _ in range(3):
            verify = await instance.api.verify(answer.data["launch_data"], user)
            first_sent_ms = first_sent_ms or verify.sent_ms
            if verify.status not in TRANSIENT_STATUSES:
                break
            await nap(self.world.clock, 2.0, asyncio.Event())
        if verify is None or not verify.ok:
            self.world.count(f"verify_{verify.code if verify else 'none'}")
            return None
        if not verify.data.get("is_valid"):
            reason = verify.data.get("reason")
            self.world.count(f"verify_{reason}")
            if reason == "NOT_CHARGEABLE":
                self.out_of_coin = True
            return None

        truth = SessionTruth(
            game_session_id=verify.data["game_session_id"],
            game_id=game.game_id,
            cafe_index=self.cafe.index,
            pc_id=self.pc_id,
            provider_user_id=user,
            verify_sent_ms=first_sent_ms or verify.sent_ms,
            verify_received_ms=verify.received_ms,
            launcher=self.launcher.truth,
        )
        self.world.truths[truth.game_session_id] = truth
        for previous in self.pc_sessions:
            if previous.replacing_verify_received_ms is None:
                previous.replacing_verify_sent_ms = first_sent_ms
                previous.replacing_verify_received_ms = verify.received_ms
        self.pc_sessions = [truth]
        runner = GameSessionRunner(self.world, self, instance, truth, self.rng)
        self.session = runner
        self._spawn(runner.run())
        return runner

    def _spawn(self, work) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _leave(self) -> None:
        """End the visit: the game ends, then the launcher logs out or the PC is switched off."""
        behaviour = self.world.behaviour
        runner = self.session
        launcher = self.launcher
        roll = self.rng.random()
        playing = runner is not None and not runner.finished.is_set()
        if (
            playing
            and launcher is not None
            and launcher.running
            and roll < (behaviour.logout_while_playing)
        ):
            # Logging out of the launcher ends the PC's live session (LAUNCHER_CLOSED); the game
            # server learns of it from its next heartbeat.
            self.world.count("logout_while_playing")
            await launcher.end()
            return

        if playing and runner is not None:
            runner.request_stop(StopMode.END)
            await runner.finished.wait()
        if launcher is None:
            return
        if roll > 1 - behaviour.power_off:
            launcher.power_off()
        else:
            await launcher.end()


async def instance_chaos(world: World, game: SimGame, rng: random.Random) -> None:
    """Shut down or crash instances of `game` at random, as Roblox servers do."""
    behaviour = world.behaviour
    while not world.closing.is_set():
        live = [i for i in world.instances[game.game_id] if i.alive and i.sessions]
        mean_gap = behaviour.instance_lifetime_mean / max(1, len(live))
        if await nap(world.clock, rng.expovariate(1 / mean_gap), world.closing):
            return
        live = [i for i in world.instances[game.game_id] if i.alive and i.sessions]
        if not live:
            continue
        instance = rng.choice(live)
        instance.alive = False
        runners = list(instance.sessions)
        if rng.random() < behaviour.instance_crash_share:
            world.count("instance_crashed")
            log.info("instance_crashed", instance=instance.name, sessions=len(runners))
            for runner in runners:
                runner.request_stop(StopMode.CRASH)
        else:
            world.count("instance_shut_down")
            log.info("instance_shut_down", instance=instance.name, sessions=len(runners))
            for runner in runners:
                runner.request_stop(StopMode.END)
