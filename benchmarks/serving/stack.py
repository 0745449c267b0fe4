"""The services under test, started and stopped by the benchmark on loopback.

A Redis server of its own on a free port (so its memory figures belong to this run alone), a
fresh PostgreSQL database on the local server, the partner simulator over HTTP, `playwave serve
--workers N` and one `playwave worker`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import structlog

log = structlog.get_logger("benchmarks.stack")

PLAYWAVE = [sys.executable, "-m", "playwave"]
# Shared by every process of the run, and by the runner that issues the API key.
SECRET_KEY = "benchmark-secret-not-for-production"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class StackConfig:
    workdir: Path
    postgres_server: str
    database: str
    api_workers: int
    session_ttl_sec: int
    ott_ttl_sec: int


@dataclass
class Stack:
    """The running services; `start` brings them up in order, `stop` ends only what it started."""

    config: StackConfig
    redis_port: int = field(default_factory=free_port)
    partner_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    database_created: bool = False

    @property
    def dsn(self) -> str:
        return f"{self.config.postgres_server.rstrip('/')}/{self.config.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def environment(self) -> dict[str, str]:
        """Return the environment every PlayWave process of the run shares."""
        config = self.config
        environment = {
            name: value for name, value in os.environ.items() if not name.startswith("PLAYWAVE_")
        }
        environment.update(
            {
                "PLAYWAVE_DATABASE_URL": self.dsn,
                "PLAYWAVE_REDIS_URL": self.redis_url,
                "PLAYWAVE_REDIS_CLUSTER": "no",
                "PLAYWAVE_PARTNER_URL": f"http://127.0.0.1:{self.partner_port}",
                "PLAYWAVE_SECRET_KEY": SECRET_KEY,
                "PLAYWAVE_BENCHMARK_ROUTES": "true",
                # The limits protect production from one noisy client; here one client is the
                # whole load, so they would cap the measurement instead of the server.
                "PLAYWAVE_RATE_LIMIT_PER_KEY_PER_MIN": "1000000000",
                "PLAYWAVE_RATE_LIMIT_PER_IP_PER_MIN": "1000000000",
                "PLAYWAVE_SESSION_TTL_SEC": str(config.session_ttl_sec),
                "PLAYWAVE_OTT_TTL_SEC": str(config.ott_ttl_sec),
                "PLAYWAVE_LOG_LEVEL": "INFO",
                "PLAYWAVE_DATA_DIR": str(config.workdir / "data"),
            }
        )
        return environment

    # Start.

    async def start(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        self._start_redis()
        await self._create_database()
        self._run_playwave(["db", "upgrade"], "db-upgrade")
        self._start_partner()
        self._start_api()
        self._start_worker()
        log.info(
            "stack_started",
            api_url=self.api_url,
            redis_port=self.redis_port,
            database=self.config.database,
        )

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log_file = (self.config.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            cwd=self.config.workdir,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def _start_redis(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server was not found on PATH; install the redis package")
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.config.workdir),
            ],
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            reply = subprocess.run(
                ["redis-cli", "-p", str(self.redis_port), "ping"],
                capture_output=True,
                text=True,
                check=False,
            )
            if reply.stdout.strip() == "PONG":
                return
            time.sleep(0.1)
        raise RuntimeError(f"redis-server on port {self.redis_port} did not answer PING in 10 s")

    async def _create_database(self) -> None:
        admin = await asyncpg.connect(f"{self.config.postgres_server.rstrip('/')}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.config.database}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{self.config.database}"')
        finally:
            await admin.close()
        self.database_created = True

    def _run_playwave(self, arguments: list[str], name: str) -> None:
        log_path = self.config.workdir / f"{name}.log"
        with log_path.open("wb") as log_file:
            subprocess.run(
                [*PLAYWAVE, *arguments],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=self.config.workdir,
                check=True,
            )

    def _start_partner(self) -> None:
        self._spawn(
            "partner",
            [
                *PLAYWAVE,
                "partner-sim",
                "--port",
                str(self.partner_port),
                "--data-dir",
                str(self.config.workdir / "partner"),
            ],
        )
        wait_http(f"http://127.0.0.1:{self.partner_port}/healthz", "partner simulator")

    def _start_api(self) -> None:
        self._spawn(
            "api",
            [
                *PLAYWAVE,
                "serve",
                "--port",
                str(self.api_port),
                "--workers",
                str(self.config.api_workers),
                "--no-jobs",
            ],
        )
        wait_http(f"{self.api_url}/readyz", "API server")

    def _start_worker(self) -> None:
        self._spawn("worker", [*PLAYWAVE, "worker"])

    # Processes.

    def api_worker_pids(self) -> list[int]:
        """Return the ids of the uvicorn worker processes serving the API.

        Uvicorn starts its workers with multiprocessing's spawn method; the parent's other
        child, the resource tracker, serves no requests.
        """
        parent = self.processes["api"].pid
        workers = [
            pid
            for pid in children_of(parent)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        return workers or [parent]

    def pid_of(self, name: str) -> int:
        return self.processes[name].pid

    # Stop.

    async def stop(self) -> None:
        for name in ("api", "worker", "partner", "redis"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            # Each service runs in a process group of its own (start_new_session), so the
            # signal reaches the API's worker processes too and nothing else.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log.warning("process_killed_after_timeout", process=name, pid=process.pid)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.database_created:
            admin = await asyncpg.connect(f"{self.config.postgres_server.rstrip('/')}/postgres")
            try:
                await admin.execute(
                    f'DROP DATABASE IF EXISTS "{self.config.database}" WITH (FORCE)'
                )
            finally:
                await admin.close()
        log.info("stack_stopped")


def wait_http(url: str, what: str, timeout_sec: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_sec
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the {what} at {url} was not ready within {timeout_sec:.0f} s")


def children_of(parent: int) -> list[int]:
    """Return the ids of the direct children of process `parent`, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces, so fields are counted after its closing bracket.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time process `pid` has used, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
