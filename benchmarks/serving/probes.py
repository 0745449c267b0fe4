"""Readings taken beside the load: machine, PostgreSQL counters, Redis memory, profiles."""

from __future__ import annotations

import asyncio
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import asyncpg
import structlog
from redis.asyncio import Redis

log = structlog.get_logger("benchmarks.probes")


def machine_description(dsn: str, redis_url: str, wrk: str) -> dict[str, object]:
    """Describe the hardware and the versions of everything the figures depend on."""
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
            break

    async def server_versions() -> tuple[str, str]:
        connection = await asyncpg.connect(dsn)
        try:
            postgres = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        client = Redis.from_url(redis_url)
        try:
            redis_version = (await client.info("server"))["redis_version"]
        finally:
            await client.aclose()
        return postgres, redis_version

    postgres_version, redis_version = asyncio.run(server_versions())
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvicorn": metadata.version("uvicorn"),
        "uvloop": _version_or_none("uvloop"),
        "httptools": _version_or_none("httptools"),
        "fastapi": metadata.version("fastapi"),
        "redis_py": metadata.version("redis"),
        "asyncpg": metadata.version("asyncpg"),
        "redis_server": redis_version,
        "postgresql": postgres_version,
        "wrk": wrk,
    }


def _version_or_none(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class PostgresCounters:
    """Cumulative counters of the benchmark database and of its game_sessions table."""

    xact_commit: int
    tup_updated: int
    tup_inserted: int
    sessions_updated: int
    sessions_hot_updated: int

    def minus(self, earlier: PostgresCounters) -> PostgresCounters:
        return PostgresCounters(
            xact_commit=self.xact_commit - earlier.xact_commit,
            tup_updated=self.tup_updated - earlier.tup_updated,
            tup_inserted=self.tup_inserted - earlier.tup_inserted,
            sessions_updated=self.sessions_updated - earlier.sessions_updated,
            sessions_hot_updated=self.sessions_hot_updated - earlier.sessions_hot_updated,
        )


async def postgres_counters(dsn: str) -> PostgresCounters:
    """Read the counters; a fresh connection so no cached statistics snapshot is reused.

    PostgreSQL publishes a backend's counts when its transaction ends or, for a busy backend,
    about once a second, so callers wait a few seconds after the load before reading.
    """
    connection = await asyncpg.connect(dsn)
    try:
        database = await connection.fetchrow(
            "SELECT xact_commit, tup_updated, tup_inserted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        table = await connection.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname = 'game_sessions'"
        )
    finally:
        await connection.close()
    return PostgresCounters(
        xact_commit=database["xact_commit"],
        tup_updated=database["tup_updated"],
        tup_inserted=database["tup_inserted"],
        sessions_updated=table["n_tup_upd"],
        sessions_hot_updated=table["n_tup_hot_upd"],
    )


async def redis_used_memory(redis_url: str) -> int:
    """Return Redis `INFO memory` used_memory in bytes."""
    client = Redis.from_url(redis_url)
    try:
        return int((await client.info("memory"))["used_memory"])
    finally:
        await client.aclose()


# Profiles.

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def record_profile(pid: int, seconds: int, output: Path) -> Path:
    """Sample process `pid` with py-spy for `seconds` into collapsed stacks at `output`.

    `--nonblocking` reads the process's memory without stopping it: this sandbox refuses the
    ptrace attach that the default mode needs, and the load stays undisturbed.
    """
    command = [
        str(Path(sys.executable).with_name("py-spy")),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(output),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0 or not output.exists():
        raise RuntimeError(f"py-spy failed on pid {pid}: {completed.stderr.strip()[:500]}")
    return output


def _short_location(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def summarise_profile(collapsed: Path, top: int = 25) -> dict[str, object]:
    """Return the share of samples in each function, inclusive and self, from collapsed stacks.

    Inclusive counts a function once per sample in which it appears anywhere on the stack; self
    counts the sample's innermost frame only.
    """
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match is None:
                names.append(frame)
                continue
            names.append(f"{match['function']} ({_short_location(match['file'])})")
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count

    def shares(counter: Counter[str]) -> list[dict[str, object]]:
        return [
            {"function": name, "share": round(count / total, 4)}
            for name, count in counter.most_common(top)
        ]

    return {"samples": total, "inclusive": shares(inclusive), "self": shares(own)}
