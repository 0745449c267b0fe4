"""Identifier formats.

Clients treat every id as opaque, but the server checks an id's shape before any lookup so that
malformed input is a 400 and never reaches a store.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
_UUID_ANY = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

GAME_SESSION_ID = re.compile(rf"gs_{_UUID}")
LAUNCHER_SESSION_ID = re.compile(rf"ls_{_UUID}")
OTT = re.compile(rf"(?:playwave_)?({_UUID_ANY})")
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{8,128}")
PROVIDER_USER_ID = re.compile(r"[1-9][0-9]{0,19}")
GAME_ID = re.compile(r"game_[0-9a-f]{12}")

LAUNCH_DATA_PREFIX = "playwave_"


def new_game_session_id() -> str:
    return f"gs_{uuid.uuid4()}"


def game_session_id_for(ott: str) -> str:
    """Return the game session id that verifying `ott` creates.

    The id is derived from the OTT (a UUID4-shaped digest), so a verify retried after the
    partner's response was lost opens billing for the same session id it will record.
    """
    digest = bytearray(hashlib.sha256(f"game-session\n{ott}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return f"gs_{uuid.UUID(bytes=bytes(digest))}"


def new_launcher_session_id() -> str:
    return f"ls_{uuid.uuid4()}"


def new_ott() -> str:
    return str(uuid.uuid4())


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def new_game_id() -> str:
    return f"game_{secrets.token_hex(6)}"


def new_key_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def parse_ott(text: str) -> str | None:
    """Return the canonical (lower-case UUID) form of an OTT, or None when `text` is not one.

    The launcher passes `playwave_<uuid>` in LaunchData and game servers may forward either
    that or the bare UUID; both name the same token.
    """
    match = OTT.fullmatch(text)
    if match is None:
        return None
    return match.group(1).lower()


def launch_data_for(ott: str) -> str:
    return f"{LAUNCH_DATA_PREFIX}{ott}"
