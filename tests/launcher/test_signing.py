"""Launcher request signatures: the pure check, and every rejection over HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from playwave.clock import ManualClock
from playwave.domain import signing
from playwave.domain.signing import SignatureFailure
from playwave.runtime import Runtime
from playwave.services.keys import hash_secret
from tests.conftest import START
from tests.launcher.conftest import launcher_keys, run_job
from tests.launcher.signed_client import Launcher

# The worked example of docs/launcher-signing.md and docs/launcher-signing.ko.md.
EXAMPLE_KEY_ID = "lk_0123456789abcdef"
EXAMPLE_SECRET = "9f2c4e7a1b3d5f6e8a0c2e4f6a8b0d1c3e5f7a9b1d3f5e7c9a1b3d5f7e9a0c2e"
EXAMPLE_TIMESTAMP = "1767225600"
EXAMPLE_NONCE = "3f9a1c2e7b4d4e0f8a6c5b1d2e3f4a5b"
EXAMPLE_BODY = b'{"game_id":"game_00000000000a"}'
EXAMPLE_BODY_SHA256 = "fe17afb934f5faca386eedcf0ea242fa3a7e13888791fafb96c22b0b70187a50"
EXAMPLE_SIGNATURE = "75311ca81352caebf969086def04f576979d38c9ec5dc229b9e62cfceaa77b36"


def example_headers(**changes: str) -> dict[str, str]:
    headers = {
        "X-PlayWave-Key-Id": EXAMPLE_KEY_ID,
        "X-PlayWave-Timestamp": EXAMPLE_TIMESTAMP,
        "X-PlayWave-Nonce": EXAMPLE_NONCE,
        "X-PlayWave-Signature": EXAMPLE_SIGNATURE,
    }
    headers.update(changes)
    return headers


def check_example(headers: dict[str, str], *, now: int = START, body: bytes = EXAMPLE_BODY):
    return signing.verify(
        EXAMPLE_SECRET, headers, method="POST", target="/v1/launcher/ott", body=body, now=now
    )


# The pure check.


def test_worked_example_canonical_string():
    text = signing.canonical_string(
        "post", "/v1/launcher/ott", EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, EXAMPLE_BODY
    )

    assert text == (
        f"POST\n/v1/launcher/ott\n{EXAMPLE_TIMESTAMP}\n{EXAMPLE_NONCE}\n{EXAMPLE_BODY_SHA256}"
    )


def test_worked_example_signature():
    signature = signing.sign(
        EXAMPLE_SECRET, "POST", "/v1/launcher/ott", EXAMPLE_TIMESTAMP, EXAMPLE_NONCE, EXAMPLE_BODY
    )

    assert signature == EXAMPLE_SIGNATURE


def test_worked_example_verifies():
    check = check_example(example_headers())

    assert check.valid
    assert check.key_id == EXAMPLE_KEY_ID
    assert check.nonce == EXAMPLE_NONCE
    assert check.timestamp == int(EXAMPLE_TIMESTAMP)


def test_empty_body_digest():
    assert signing.body_digest(b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_header_names_any_case():
    headers = {name.lower(): value for name, value in example_headers().items()}

    assert check_example(headers).valid


def test_upper_case_signature_accepted():
    check = check_example(example_headers(**{"X-PlayWave-Signature": EXAMPLE_SIGNATURE.upper()}))

    assert check.valid


@pytest.mark.parametrize("missing", signing.SIGNATURE_HEADERS)
def test_missing_header_named(missing: str):
    headers = example_headers()
    del headers[missing]

    check = check_example(headers)

    assert check.failure is SignatureFailure.MISSING_HEADER
    assert missing in check.message


def test_unknown_key_without_secret():
    check = signing.verify(
        None, example_headers(), method="POST", target="/v1/launcher/ott", body=b"", now=START
    )

    assert check.failure is SignatureFailure.UNKNOWN_KEY


@pytest.mark.parametrize(
    "nonce", ["short-nonce", "x" * 129, "nonce with spaces 123", "nonce/with/slashes/1234"]
)
def test_bad_nonce_shape(nonce: str):
    check = check_example(example_headers(**{"X-PlayWave-Nonce": nonce}))

    assert check.failure is SignatureFailure.BAD_NONCE


@pytest.mark.parametrize("timestamp", ["1767225600.5", "-1767225600", "soon", "1" * 13])
def test_bad_timestamp_shape(timestamp: str):
    check = check_example(example_headers(**{"X-PlayWave-Timestamp": timestamp}))

    assert check.failure is SignatureFailure.BAD_TIMESTAMP


@pytest.mark.parametrize(
    ("offset_ms", "failure"),
    [
        (-300_000, None),
        (300_000, None),
        (300_001, SignatureFailure.STALE_TIMESTAMP),
        (-300_001, SignatureFailure.FUTURE_TIMESTAMP),
    ],
)
def test_skew_bound_exact(offset_ms: int, failure: SignatureFailure | None):
    # The example is signed at START, and the server clock is `offset_ms` away from it.
    check = check_example(example_headers(), now=START + offset_ms)

    assert check.failure is failure


def test_tampered_body_rejected():
    check = check_example(example_headers(), body=b'{"game_id":"game_00000000000b"}')

    assert check.failure is SignatureFailure.BAD_SIGNATURE


def test_other_target_rejected():
    check = signing.verify(
        EXAMPLE_SECRET,
        example_headers(),
        method="POST",
        target="/v1/launcher/ott?x=1",
        body=EXAMPLE_BODY,
        now=START,
    )

    assert check.failure is SignatureFailure.BAD_SIGNATURE


def test_other_secret_rejected():
    check = signing.verify(
        EXAMPLE_SECRET[::-1],
        example_headers(),
        method="POST",
        target="/v1/launcher/ott",
        body=EXAMPLE_BODY,
        now=START,
    )

    assert check.failure is SignatureFailure.BAD_SIGNATURE


def test_malformed_signature_rejected():
    check = check_example(example_headers(**{"X-PlayWave-Signature": "z" * 64}))

    assert check.failure is SignatureFailure.BAD_SIGNATURE


def test_nonce_window_covers_future_skew():
    assert signing.NONCE_TTL_MS >= 2 * signing.MAX_SKEW_MS


@pytest.mark.parametrize("skew_ms", [-300_000, -1_000, 0, 299_000, 300_000])
def test_nonce_kept_while_acceptable(skew_ms: int):
    timestamp = (START + skew_ms) // 1000
    last_acceptable = timestamp * 1000 + signing.MAX_SKEW_MS

    expiry = signing.nonce_expiry(timestamp, START)

    assert expiry > last_acceptable
    assert expiry >= START + signing.NONCE_TTL_MS


# Over HTTP.


def error_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


async def test_unsigned_start_rejected(client: httpx.AsyncClient):
    response = await client.post("/v1/launcher/session/start", json={"pc_id": "pc-1"})

    assert response.status_code == 401
    assert error_code(response) == "SIGNATURE_MISSING"
    assert response.json()["success"] is False


@pytest.mark.parametrize("missing", signing.SIGNATURE_HEADERS)
async def test_each_missing_header_rejected(launcher: Launcher, missing: str):
    request = launcher.sign("POST", "/v1/launcher/session/start", {"pc_id": "pc-1"})
    del request.headers[missing]

    response = await launcher.send(request)

    assert response.status_code == 401
    assert error_code(response) == "SIGNATURE_MISSING"
    assert missing in response.json()["error"]["message"]


async def test_unknown_key_rejected(launcher: Launcher):
    launcher.key_id = "lk_ffffffffffffffff"

    response = await launcher.start()

    assert response.status_code == 401
    assert error_code(response) == "UNKNOWN_KEY"


async def test_revoked_key_rejected(launcher: Launcher, runtime: Runtime):
    assert await launcher_keys(runtime).revoke(launcher.key_id)

    response = await launcher.start()

    assert response.status_code == 401
    assert error_code(response) == "UNKNOWN_KEY"


async def test_rotation_keeps_both_keys(launcher: Launcher, runtime: Runtime, client):
    keys = launcher_keys(runtime)
    new_key, new_secret = await keys.issue()
    rotated = Launcher(client, new_key.key_id, new_secret, launcher.clock)

    old_answer = await launcher.start("pc-old-key")
    new_answer = await rotated.start("pc-new-key")
    await keys.revoke(launcher.key_id)
    after_revoke = await rotated.heartbeat()

    assert old_answer.status_code == 200
    assert new_answer.status_code == 200
    assert after_revoke.status_code == 200


async def test_key_secret_derived_from_server_secret(runtime: Runtime, launcher: Launcher):
    expected = hash_secret(runtime.settings.resolve_secret_key(), "launcher-key", launcher.key_id)

    assert launcher.secret == expected


async def test_wrong_secret_rejected(launcher: Launcher):
    launcher.secret = "0" * 64

    response = await launcher.start()

    assert response.status_code == 401
    assert error_code(response) == "INVALID_SIGNATURE"


async def test_body_changed_after_signing(launcher: Launcher):
    request = launcher.sign("POST", "/v1/launcher/session/start", {"pc_id": "pc-1"})
    tampered = request.body.replace(b"pc-1", b"pc-2")

    response = await launcher.client.post(request.target, content=tampered, headers=request.headers)

    assert response.status_code == 401
    assert error_code(response) == "INVALID_SIGNATURE"


async def test_query_is_signed(launcher: Launcher, game):
    assert (await launcher.start()).status_code == 200
    request = launcher.sign("POST", "/v1/launcher/ott?lang=ko", {"game_id": game.game_id})

    signed_with_query = await launcher.send(request)
    query_dropped = await launcher.client.post(
        "/v1/launcher/ott?lang=en", content=request.body, headers=request.headers
    )

    assert signed_with_query.status_code == 200
    assert query_dropped.status_code == 401
    assert error_code(query_dropped) == "INVALID_SIGNATURE"


async def test_bad_nonce_rejected(launcher: Launcher):
    response = await launcher.call(
        "POST", "/v1/launcher/session/start", {"pc_id": "pc-1"}, nonce="too-short"
    )

    assert response.status_code == 401
    assert error_code(response) == "INVALID_SIGNATURE"
    assert "X-PlayWave-Nonce" in response.json()["error"]["message"]


async def test_bad_timestamp_rejected(launcher: Launcher):
    request = launcher.sign("POST", "/v1/launcher/session/start", {"pc_id": "pc-1"})
    request.headers["X-PlayWave-Timestamp"] = "yesterday"

    response = await launcher.send(request)

    assert response.status_code == 401
    assert error_code(response) == "INVALID_SIGNATURE"


@pytest.mark.parametrize("skew_sec", [-30, 30, -300, 300])
async def test_skew_within_bound_accepted(launcher: Launcher, skew_sec: int):
    response = await launcher.call(
        "POST",
        "/v1/launcher/session/start",
        {
            "pc_id": "pc-1",
            "internal_ip": "10.0.0.5",
            "hardware": {},
            "launcher_version": "1.0.0",
        },
        skew_sec=skew_sec,
    )

    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(("skew_sec", "word"), [(-301, "past"), (301, "future")])
async def test_skew_past_bound_rejected(launcher: Launcher, skew_sec: int, word: str):
    response = await launcher.call(
        "POST", "/v1/launcher/session/start", {"pc_id": "pc-1"}, skew_sec=skew_sec
    )

    assert response.status_code == 401
    assert error_code(response) == "TIMESTAMP_EXPIRED"
    assert word in response.json()["error"]["message"]


async def test_replay_inside_window_rejected(launcher: Launcher, clock: ManualClock):
    assert (await launcher.start()).status_code == 200
    request = launcher.sign("PATCH", "/v1/launcher/session/heartbeat", {})

    first = await launcher.send(request)
    clock.advance(100)
    replayed = await launcher.send(request)

    assert first.status_code == 200
    assert replayed.status_code == 401
    assert error_code(replayed) == "NONCE_REUSED"


async def test_replay_after_window_rejected(
    launcher: Launcher, clock: ManualClock, runtime: Runtime
):
    assert (await launcher.start()).status_code == 200
    request = launcher.sign("PATCH", "/v1/launcher/session/heartbeat", {})
    assert (await launcher.send(request)).status_code == 200

    clock.advance(signing.NONCE_TTL_MS / 1000)
    await run_job(runtime, "purge_live")
    replayed = await launcher.send(request)

    assert replayed.status_code == 401
    assert error_code(replayed) == "TIMESTAMP_EXPIRED"


async def test_same_nonce_other_request_rejected(launcher: Launcher):
    assert (await launcher.start()).status_code == 200
    nonce = "fixed-nonce-0123456789"

    first = await launcher.call("PATCH", "/v1/launcher/session/heartbeat", {}, nonce=nonce)
    second = await launcher.call("DELETE", "/v1/launcher/session/end", {}, nonce=nonce)

    assert first.status_code == 200
    assert second.status_code == 401
    assert error_code(second) == "NONCE_REUSED"


async def test_rejected_signature_keeps_nonce_unused(launcher: Launcher):
    assert (await launcher.start()).status_code == 200
    nonce = "nonce-for-a-forgery-0001"
    forged = launcher.sign("PATCH", "/v1/launcher/session/heartbeat", {}, nonce=nonce)
    forged.headers["X-PlayWave-Signature"] = "0" * 64

    rejected = await launcher.send(forged)
    genuine = await launcher.call("PATCH", "/v1/launcher/session/heartbeat", {}, nonce=nonce)

    assert error_code(rejected) == "INVALID_SIGNATURE"
    assert genuine.status_code == 200


async def test_future_signed_replay_never_accepted(
    launcher: Launcher, clock: ManualClock, runtime: Runtime
):
    assert (await launcher.start()).status_code == 200
    request = launcher.sign("PATCH", "/v1/launcher/session/heartbeat", {}, skew_sec=299)
    signed_for = int(request.headers["X-PlayWave-Timestamp"]) * 1000
    accepted = await launcher.send(request)

    # The timestamp is acceptable until signed_for + 300 s, and the nonce is still kept then.
    clock.set(signed_for + signing.MAX_SKEW_MS)
    last_acceptable = await launcher.send(request)
    clock.set(signed_for + signing.MAX_SKEW_MS + 1)
    just_after = await launcher.send(request)
    clock.set(START + signing.NONCE_TTL_MS)
    await run_job(runtime, "purge_live")
    nonce_forgotten = await launcher.send(request)

    assert accepted.status_code == 200
    assert error_code(last_acceptable) == "NONCE_REUSED"
    assert error_code(just_after) == "TIMESTAMP_EXPIRED"
    assert error_code(nonce_forgotten) == "TIMESTAMP_EXPIRED"


async def test_edge_future_replay_rejected(launcher: Launcher, clock: ManualClock):
    assert (await launcher.start()).status_code == 200
    request = launcher.sign("PATCH", "/v1/launcher/session/heartbeat", {}, skew_sec=300)
    accepted = await launcher.send(request)

    # Signed exactly 300 s ahead, the request's timestamp is still acceptable 600 s later.
    clock.advance(signing.NONCE_TTL_MS / 1000)
    replayed = await launcher.send(request)

    assert accepted.status_code == 200
    assert error_code(replayed) == "NONCE_REUSED"


async def test_signature_checked_before_json(launcher: Launcher):
    unsigned = await launcher.client.post(
        "/v1/launcher/session/start",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    signed = await launcher.call("POST", "/v1/launcher/session/start", b"{not json")

    assert error_code(unsigned) == "SIGNATURE_MISSING"
    assert signed.status_code == 400
    assert error_code(signed) == "BAD_REQUEST"
    assert signed.json()["error"]["message"] == "The request body is not valid JSON."


async def test_signed_body_bytes_not_reencoded(launcher: Launcher):
    # Whitespace and key order are part of the signed bytes, so the server must not re-encode.
    body = json.dumps(
        {
            "launcher_version": "1.0.0",
            "hardware": {"cpu": "i5"},
            "internal_ip": "10.0.0.5",
            "pc_id": "pc-spaced",
        },
        indent=2,
    ).encode()

    response = await launcher.call("POST", "/v1/launcher/session/start", body)

    assert response.status_code == 200, response.json()
