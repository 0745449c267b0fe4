"""Real PostgreSQL and Redis servers for the tests: fresh databases, key namespaces, a cluster.

Servers come from `PLAYWAVE_TEST_DATABASE_URL` (default
`postgresql://postgres@127.0.0.1:5432/postgres`, a user allowed to create databases) and
`PLAYWAVE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`). The Redis Cluster is started by
the tests from the `redis-server` and `redis-cli` binaries on PATH.

A test whose server is unreachable skips with the reason, unless `CI=true`, where it fails:
CI must never pass by skipping the backends it is meant to test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis
from sqlalchemy.engine import make_url

from playwave.stores.sql.engine import upgrade_schema

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT_SEC = 3.0

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def database_url() -> str:
    return os.environ.get("PLAYWAVE_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)


def redis_url() -> str:
    return os.environ.get("PLAYWAVE_TEST_REDIS_URL", DEFAULT_REDIS_URL)


def unreachable(server: str, detail: str) -> None:
    """Fail the test in CI, skip it elsewhere, naming the server that could not be reached."""
    message = f"{server} is unreachable: {detail}"
    if in_ci():
        pytest.fail(f"{message} (CI=true, so backend tests must run)", pytrace=False)
    pytest.skip(message)


def run_async(make_coroutine: Callable[[], Any]) -> Any:
    """Run a coroutine to completion on a private event loop in a worker thread.

    Sync fixtures use this so they never touch the event loop of the test that requested them.
    """
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(lambda: asyncio.run(make_coroutine())).result()


def run_in_thread(function: Callable[[], T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as executor:
        return executor.submit(function).result()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """Return a free port P whose cluster bus port P + 10000 is free too.

    Redis Cluster needs P + 10000 for node-to-node traffic, so P must be at most 55535.
    """
    for _ in range(200):
        port = secrets.randbelow(25_000) + 20_000
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port pair (P, P + 10000) found for a Redis Cluster node")


# PostgreSQL.


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@dataclass
class PostgresServer:
    """The PostgreSQL server of the tests; hands out fresh, migrated databases."""

    admin_url: str
    _error: str | None = None
    _checked: bool = False
    _template: str | None = None

    def require(self) -> None:
        if not self._checked:
            self._error = run_async(self._probe)
            self._checked = True
        if self._error is not None:
            unreachable(f"PostgreSQL at {make_url(self.admin_url).render_as_string()}", self._error)

    async def _probe(self) -> str | None:
        try:
            connection = await asyncpg.connect(
                _asyncpg_dsn(self.admin_url), timeout=CONNECT_TIMEOUT_SEC
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as error:
            return f"{type(error).__name__}: {error}"
        await connection.close()
        return None

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """Create a migrated database `playwave_test_<random>`, yield its URL, drop it after.

        The Alembic migrations run once per test session into a template database, and each
        test's database is a copy of it (CREATE DATABASE ... TEMPLATE), which takes a fraction
        of the time of migrating every database anew.
        """
        self.require()
        template = self._migrated_template()
        name = f"playwave_test_{secrets.token_hex(6)}"
        run_async(lambda: self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        try:
            yield _with_database(self.admin_url, name)
        finally:
            self.drop_database(name)

    def _migrated_template(self) -> str:
        if self._template is None:
            name = f"playwave_template_{secrets.token_hex(6)}"
            run_async(lambda: self._admin(f'CREATE DATABASE "{name}"'))
            self._template = name
            url = _async_driver(_with_database(self.admin_url, name))
            run_in_thread(lambda: upgrade_schema(url))
        return self._template

    def drop_database(self, name: str) -> None:
        run_async(lambda: self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        """Drop the template database, if one was made."""
        if self._template is not None:
            self.drop_database(self._template)
            self._template = None

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(
            _asyncpg_dsn(self.admin_url), timeout=CONNECT_TIMEOUT_SEC
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()


def _async_driver(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    """Return the postgresql+asyncpg URL of a PostgreSQL URL."""
    return _async_driver(url)


# Redis.


def new_prefix() -> str:
    return f"pwtest_{secrets.token_hex(6)}"


@dataclass
class RedisServer:
    """A Redis server (standalone or Cluster) in which each test works under its own key prefix."""

    url: str
    name: str = "Redis"
    cluster: bool = False
    _error: str | None = None
    _checked: bool = False

    def client(self) -> redis.Redis | redis.RedisCluster:
        if self.cluster:
            return redis.RedisCluster.from_url(self.url, socket_timeout=CONNECT_TIMEOUT_SEC)
        return redis.Redis.from_url(
            self.url, socket_timeout=CONNECT_TIMEOUT_SEC, socket_connect_timeout=CONNECT_TIMEOUT_SEC
        )

    def require(self) -> None:
        if not self._checked:
            self._checked = True
            try:
                client = self.client()
                client.ping()
                client.close()
            except (redis.RedisError, OSError) as error:
                self._error = f"{type(error).__name__}: {error}"
        if self._error is not None:
            unreachable(f"{self.name} at {self.url}", self._error)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (on every primary of a cluster)."""
        client = self.client()
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for key in keys:
                client.delete(key)
            return len(keys)
        finally:
            client.close()

    @contextmanager
    def namespace(self) -> Iterator[str]:
        """Yield a fresh key prefix, deleting its keys afterwards."""
        self.require()
        prefix = new_prefix()
        try:
            yield prefix
        finally:
            self.delete_prefix(prefix)


# Redis servers started by the tests.


def _require_binaries(*names: str) -> None:
    for name in names:
        if shutil.which(name) is None:
            unreachable(f"Redis ({name})", f"{name} is not on PATH")


@dataclass
class RedisProcess:
    """A `redis-server` on a free loopback port, in its own directory, that a test may stop."""

    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        _require_binaries("redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                *self.extra_args,
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        self._wait_until(lambda: self._pings(), f"redis-server on port {self.port} to start")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def _pings(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(600):
            if self.process is not None and self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"redis-server on port {self.port} exited:\n{log}")
            if condition():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")


@dataclass
class RedisClusterProcesses:
    """Three cluster-enabled `redis-server` masters joined by `redis-cli --cluster create`."""

    directory: Path
    nodes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        _require_binaries("redis-server", "redis-cli")
        for index in range(3):
            node_directory = self.directory / f"node{index}"
            node = RedisProcess(
                node_directory,
                port=free_cluster_port(),
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_directory / "nodes.conf"),
                    "--cluster-node-timeout",
                    "5000",
                ),
            )
            self.nodes.append(node)
            node.start()

        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:
            node._wait_until(lambda node=node: _cluster_ok(node.port), "cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    try:
        info = client.execute_command("CLUSTER INFO")
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    if isinstance(info, dict):
        state = info.get("cluster_state", info.get(b"cluster_state"))
        return state in ("ok", b"ok")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


# Fixtures, imported by tests/conftest.py.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(database_url())
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    return RedisServer(redis_url())


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Start a three-master Redis Cluster on free loopback ports for the whole test session."""
    processes = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
    try:
        processes.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        processes.stop()
        unreachable("Redis Cluster started by the tests", str(error))
    try:
        yield RedisServer(processes.url, name="Redis Cluster", cluster=True)
    finally:
        processes.stop()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """Return the URL of a fresh, migrated PostgreSQL database, dropped after the test."""
    with postgres_server.fresh_database() as url:
        yield url


@pytest.fixture
def redis_namespace(redis_server: RedisServer) -> Iterator[str]:
    """Return a fresh key prefix on the test Redis server, its keys deleted after the test."""
    with redis_server.namespace() as prefix:
        yield prefix


@pytest.fixture
def cluster_namespace(redis_cluster: RedisServer) -> Iterator[str]:
    with redis_cluster.namespace() as prefix:
        yield prefix
