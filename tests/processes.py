"""Helpers that run the `playwave` command and a real server process on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def playwave_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PLAYWAVE_")}
    env.update(
        {"PLAYWAVE_DATA_DIR": str(data_dir), "PLAYWAVE_LOG_LEVEL": "WARNING", "PLAYWAVE_LANG": "en"}
    )
    env.update(extra)
    return env


def run_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run `playwave ARGS --json` and return its JSON output."""
    result = subprocess.run(
        [sys.executable, "-m", "playwave", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextmanager
def running_server(env: dict[str, str], *args: str) -> Iterator[str]:
    """Start `playwave serve` on a free loopback port; yield its base URL; stop it with SIGTERM."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "playwave",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, process)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode}: {output}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {base_url} did not become ready in {timeout} s")
