"""Load from `wrk` with `request.lua`, and the figures read from its output."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("benchmarks.load")

SCRIPT = Path(__file__).with_name("request.lua")
NOOP_PATH = "/v1/bench/noop"


@dataclass(frozen=True)
class Call:
    """One kind of game session request: its method, path and body."""

    kind: str
    method: str
    path: str


HEARTBEAT = Call("heartbeat", "PATCH", "/v1/game/session/heartbeat")
VERIFY = Call("verify", "POST", "/v1/game/session/verify")
END = Call("end", "DELETE", "/v1/game/session/end")


def noop_of(call: Call) -> Call:
    """Return the no-op counterpart of `call`: same method and body, no service work."""
    return Call(call.kind, call.method, NOOP_PATH)


@dataclass(frozen=True)
class LoadResult:
    label: str
    requests: int
    duration_sec: float
    rate: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    failed: int
    wrapped: int
    connections: int
    pause_ms: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class LoadSettings:
    base_url: str
    api_key: str
    connections: int
    threads: int
    duration_sec: int


def run_wrk(
    settings: LoadSettings,
    call: Call,
    ids_file: Path,
    label: str,
    *,
    duration_sec: int | None = None,
    pause_ms: float = 0.0,
    connections: int | None = None,
) -> LoadResult:
    """Run wrk once against `call` with ids from `ids_file` and return what it measured.

    A run with failed requests (non-2xx answers, socket errors, timeouts) or with ids sent
    twice still returns its figures; the caller decides whether they count.
    """
    connections = connections or settings.connections
    duration = duration_sec or settings.duration_sec
    command = [
        "wrk",
        f"--threads={settings.threads}",
        f"--connections={connections}",
        f"--duration={duration}s",
        "--timeout=10s",
        f"--script={SCRIPT}",
        settings.base_url + call.path,
        "--",
        str(ids_file),
        call.method,
        call.path,
        call.kind,
        settings.api_key,
        str(settings.threads),
    ]
    environment = dict(os.environ)
    if pause_ms > 0:
        environment["WRK_PAUSE_MS"] = f"{pause_ms:.3f}"
    else:
        environment.pop("WRK_PAUSE_MS", None)

    completed = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"wrk failed with exit code {completed.returncode} on {call.path}: "
            f"{completed.stderr.strip() or completed.stdout.strip()}"
        )
    marker = next(
        (line for line in completed.stdout.splitlines() if line.startswith("WRK_RESULT ")), None
    )
    if marker is None:
        raise RuntimeError(f"wrk printed no WRK_RESULT line on {call.path}: {completed.stdout}")
    raw = json.loads(marker.removeprefix("WRK_RESULT "))

    failed = sum(
        raw[name]
        for name in (
            "status_errors",
            "connect_errors",
            "read_errors",
            "write_errors",
            "timeouts",
        )
    )
    duration_sec_measured = raw["duration_us"] / 1e6
    result = LoadResult(
        label=label,
        requests=raw["requests"],
        duration_sec=round(duration_sec_measured, 3),
        rate=round(raw["requests"] / duration_sec_measured, 1),
        mean_ms=round(raw["mean_us"] / 1000, 3),
        p50_ms=round(raw["p50_us"] / 1000, 3),
        p90_ms=round(raw["p90_us"] / 1000, 3),
        p99_ms=round(raw["p99_us"] / 1000, 3),
        p999_ms=round(raw["p999_us"] / 1000, 3),
        max_ms=round(raw["max_us"] / 1000, 3),
        failed=failed,
        wrapped=raw["wrapped"],
        connections=connections,
        pause_ms=pause_ms,
    )
    log.info(
        "load_run",
        label=label,
        rate=result.rate,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        failed=failed,
        wrapped=result.wrapped,
    )
    return result


def wrk_version() -> str:
    completed = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (completed.stdout or completed.stderr).splitlines()[0].strip()
