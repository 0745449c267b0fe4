"""HMAC-SHA256 request signatures of the launcher API.

A launcher signs each request with the secret of one of its launcher keys. The signed text is
five lines joined by "\\n":

    METHOD            upper case, e.g. POST
    PATH?QUERY        the request target exactly as sent (no "?" when there is no query)
    TIMESTAMP         Unix seconds, decimal
    NONCE             16 to 128 characters of A-Z, a-z, 0-9, "_" and "-"
    BODY_SHA256       hex SHA-256 of the raw body bytes (of b"" when there is no body)

and the signature is the lower-case hex HMAC-SHA256 of that text, keyed with the secret's UTF-8
bytes. Everything here is pure: the caller passes the secret, the headers and the current time,
and remembers nonces itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from playwave.clock import Millis

KEY_ID_HEADER = "X-PlayWave-Key-Id"
TIMESTAMP_HEADER = "X-PlayWave-Timestamp"
NONCE_HEADER = "X-PlayWave-Nonce"
SIGNATURE_HEADER = "X-PlayWave-Signature"
SIGNATURE_HEADERS = (KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

# A request is accepted while its timestamp is at most this far from the server clock, either way.
MAX_SKEW_MS = 300_000
# A nonce is remembered for twice the skew bound, because a request signed MAX_SKEW_MS in the
# future stays acceptable for 2 * MAX_SKEW_MS after it arrives.
NONCE_TTL_MS = 2 * MAX_SKEW_MS

NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")


class SignatureFailure(StrEnum):
    MISSING_HEADER = "MISSING_HEADER"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    BAD_NONCE = "BAD_NONCE"
    BAD_TIMESTAMP = "BAD_TIMESTAMP"
    STALE_TIMESTAMP = "STALE_TIMESTAMP"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    BAD_SIGNATURE = "BAD_SIGNATURE"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The outcome of checking one request's signature.

    `failure` is None and `message` is empty when the signature is valid. The caller still has
    to remember the nonce and reject one it has seen in the last NONCE_TTL_MS.
    """

    failure: SignatureFailure | None
    message: str = ""
    key_id: str | None = None
    nonce: str | None = None
    timestamp: int | None = None

    @property
    def valid(self) -> bool:
        return self.failure is None


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_string(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Build the text that is signed: method, target, timestamp, nonce and body digest."""
    return "\n".join((method.upper(), target, timestamp, nonce, body_digest(body)))


def sign(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 signature of a request under `secret`."""
    text = canonical_string(method, target, timestamp, nonce, body)
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def nonce_expiry(timestamp: int, now: Millis) -> Millis:
    """Return the expiry of a nonce accepted at `now` with `timestamp` (Unix seconds).

    The expiry is `now` + NONCE_TTL_MS, and never earlier than the first moment at which the
    request's timestamp is stale, so the nonce is kept for as long as the request is acceptable.
    """
    return max(now + NONCE_TTL_MS, timestamp * 1000 + MAX_SKEW_MS + 1)


def key_id_of(headers: Mapping[str, str]) -> str | None:
    """Return the key id a request names, when it is present and well formed."""
    key_id = _lowered(headers).get(KEY_ID_HEADER.lower())
    if key_id is None or not KEY_ID.fullmatch(key_id):
        return None
    return key_id


def verify(
    secret: str | None,
    headers: Mapping[str, str],
    *,
    method: str,
    target: str,
    body: bytes,
    now: Millis,
) -> SignatureCheck:
    """Check a request's signature headers against `secret` at time `now`.

    `secret` is None when the key id is unknown or revoked. `target` is the path with its query
    string exactly as sent. The signature is compared in constant time.
    """
    values = _lowered(headers)
    missing = [name for name in SIGNATURE_HEADERS if not values.get(name.lower())]
    if missing:
        return SignatureCheck(
            SignatureFailure.MISSING_HEADER,
            f"The {', '.join(missing)} header{'s are' if len(missing) > 1 else ' is'} missing; "
            "every launcher request must be signed.",
        )

    key_id = values[KEY_ID_HEADER.lower()]
    if secret is None or not KEY_ID.fullmatch(key_id):
        return SignatureCheck(
            SignatureFailure.UNKNOWN_KEY,
            f"Launcher key '{key_id[:40]}' is unknown or revoked.",
        )

    nonce = values[NONCE_HEADER.lower()]
    if not NONCE.fullmatch(nonce):
        return SignatureCheck(
            SignatureFailure.BAD_NONCE,
            f"{NONCE_HEADER} must be 16 to 128 characters of A-Z, a-z, 0-9, '_' or '-'.",
            key_id=key_id,
        )

    timestamp_text = values[TIMESTAMP_HEADER.lower()]
    if not TIMESTAMP.fullmatch(timestamp_text):
        return SignatureCheck(
            SignatureFailure.BAD_TIMESTAMP,
            f"{TIMESTAMP_HEADER} must be Unix time in whole seconds, as a decimal integer.",
            key_id=key_id,
            nonce=nonce,
        )

    timestamp = int(timestamp_text)
    skew = timestamp * 1000 - now
    if skew < -MAX_SKEW_MS:
        return SignatureCheck(
            SignatureFailure.STALE_TIMESTAMP,
            f"{TIMESTAMP_HEADER} {timestamp} is {-skew // 1000} s in the past; the limit is "
            f"{MAX_SKEW_MS // 1000} s. Sign the request again with the current time.",
            key_id=key_id,
            nonce=nonce,
            timestamp=timestamp,
        )
    if skew > MAX_SKEW_MS:
        return SignatureCheck(
            SignatureFailure.FUTURE_TIMESTAMP,
            f"{TIMESTAMP_HEADER} {timestamp} is {skew // 1000} s in the future; the limit is "
            f"{MAX_SKEW_MS // 1000} s. Check the launcher PC's clock.",
            key_id=key_id,
            nonce=nonce,
            timestamp=timestamp,
        )

    presented = values[SIGNATURE_HEADER.lower()]
    expected = sign(secret, method, target, timestamp_text, nonce, body)
    if not SIGNATURE.fullmatch(presented) or not hmac.compare_digest(
        expected.encode(), presented.lower().encode()
    ):
        return SignatureCheck(
            SignatureFailure.BAD_SIGNATURE,
            f"{SIGNATURE_HEADER} does not match the request; sign the method, the path with its "
            "query, the timestamp, the nonce and the SHA-256 of the exact body bytes.",
            key_id=key_id,
            nonce=nonce,
            timestamp=timestamp,
        )

    return SignatureCheck(None, key_id=key_id, nonce=nonce, timestamp=timestamp)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
