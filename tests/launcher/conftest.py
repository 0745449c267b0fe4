"""Fixtures of the launcher tests: a launcher key and a launcher that signs with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from playwave.api.app import create_app
from playwave.clock import ManualClock
from playwave.runtime import Runtime
from playwave.services.launcher_keys import LauncherKeys
from tests.launcher.signed_client import Launcher


def launcher_keys(runtime: Runtime) -> LauncherKeys:
    return LauncherKeys(
        runtime.records, runtime.live, runtime.clock, runtime.settings.resolve_secret_key()
    )


@pytest.fixture
async def launcher_key(runtime: Runtime) -> tuple[str, str]:
    key, secret = await launcher_keys(runtime).issue()
    return key.key_id, secret


@pytest.fixture
def launcher(
    client: httpx.AsyncClient, launcher_key: tuple[str, str], clock: ManualClock
) -> Launcher:
    key_id, secret = launcher_key
    return Launcher(client, key_id, secret, clock)


@pytest.fixture
def make_launcher(client: httpx.AsyncClient, launcher_key: tuple[str, str], clock: ManualClock):
    """Build further launchers on the same key, e.g. the same PC after a restart."""

    def make() -> Launcher:
        key_id, secret = launcher_key
        return Launcher(client, key_id, secret, clock)

    return make


async def run_job(runtime: Runtime, name: str) -> int:
    return await runtime.jobs_by_name[name].step()


@pytest.fixture
async def client_from(runtime: Runtime) -> AsyncIterator:
    """Build HTTP clients whose connections come from a given peer address."""
    clients: list[httpx.AsyncClient] = []

    def make(peer_ip: str) -> httpx.AsyncClient:
        app = create_app(runtime=runtime, run_jobs=False)
        transport = httpx.ASGITransport(app=app, client=(peer_ip, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="http://playwave.test")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
