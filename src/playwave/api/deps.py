"""Request dependencies: the runtime, JSON checks, API key authentication and rate limits."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from playwave.runtime import Runtime
from playwave.services.errors import BadRequest, RateLimited
from playwave.services.keys import AuthenticatedKey


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


async def require_json(request: Request) -> None:
    """Reject a body sent with a Content-Type other than JSON; a missing one is read as JSON.

    A coroutine, because FastAPI runs a plain function dependency in its thread pool, and that
    hand-off to a thread and back costs more than the check itself on every request.
    """
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise BadRequest(f"Content-Type must be application/json, not '{media_type}'.")


def client_ip(request: Request) -> str:
    """Return the client's IP: the peer, or `X-Forwarded-For` when the peer is a trusted proxy.

    Walking `X-Forwarded-For` from the right, trusted proxies are skipped and the first other
    address is the client, so a client cannot forge its address by adding entries.
    """
    peer = request.client.host if request.client else "0.0.0.0"
    runtime: Runtime = request.app.state.runtime
    proxies = [ip_network(item, strict=False) for item in runtime.settings.trusted_proxies]
    if not proxies or not _in_networks(peer, proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _in_networks(hop, proxies):
            return hop if _is_ip(hop) else peer
    return peer


def _in_networks(address: str, networks: list) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _is_ip(address: str) -> bool:
    try:
        ip_address(address)
    except ValueError:
        return False
    return True


API_KEY_HEADER = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="The game's API key, one per environment."
)


async def api_key(
    request: Request,
    x_api_key: str | None = Security(API_KEY_HEADER),
) -> AuthenticatedKey:
    runtime = get_runtime(request)
    limits = request.app.state.rate_limits
    ip = client_ip(request)
    wait = limits["ip"].hit(ip)
    if wait is not None:
        raise RateLimited(f"Too many requests from {ip}; retry after {wait} s.", wait)

    key = await runtime.api_keys.authenticate(x_api_key)
    wait = limits["key"].hit(key.key_id)
    if wait is not None:
        raise RateLimited(
            f"Too many requests for API key {key.key_id}; retry after {wait} s.", wait
        )
    request.state.game_id = key.game_id
    return key
