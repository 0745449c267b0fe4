"""Operator-facing CLI messages in Korean and English.

Korean is used when `PLAYWAVE_LANG`, `LC_ALL`, `LC_MESSAGES` or `LANG` (checked in that order)
starts with `ko`; English otherwise. Machine-readable output (`--json`) is never translated.
"""

from __future__ import annotations

import os

MESSAGES: dict[str, tuple[str, str]] = {
    "game_created": ("Game created: {game_id} ({name})", "게임을 만들었습니다: {game_id} ({name})"),
    "key_created": (
        "API key for {game_id} ({environment}) — shown only once, store it now:",
        "{game_id} ({environment})의 API 키입니다. 다시 표시되지 않으니 지금 보관하세요:",
    ),
    "key_revoked": ("API key {key_id} revoked.", "API 키 {key_id}를 폐기했습니다."),
    "key_not_found": (
        "API key {key_id} was not found or is already revoked.",
        "API 키 {key_id}를 찾을 수 없거나 이미 폐기되었습니다.",
    ),
    "game_not_found": (
        "Game {game_id} was not found or is inactive.",
        "게임 {game_id}를 찾을 수 없거나 비활성 상태입니다.",
    ),
    "game_deactivated": ("Game {game_id} is now inactive.", "게임 {game_id}를 비활성화했습니다."),
    "ott_minted": (
        "OTT for {game_id} on PC {pc_id} (valid {expires_in} s):",
        "PC {pc_id}의 {game_id}용 OTT입니다 ({expires_in}초 동안 유효):",
    ),
    "schema_upgraded": ("Database schema is up to date.", "데이터베이스 스키마가 최신입니다."),
    "cafe_added": (
        "Sandbox cafe {cafe_id} ({name}) added for IP {ip} with balance {balance}.",
        "샌드박스 PC방 {cafe_id} ({name})을(를) IP {ip}, 잔액 {balance}(으)로 등록했습니다.",
    ),
    "serving": (
        "PlayWave server on http://{host}:{port} (data: {mode})",
        "PlayWave 서버 실행 중: http://{host}:{port} (데이터: {mode})",
    ),
    "worker_started": (
        "Background worker running. Stop with Ctrl+C.",
        "백그라운드 작업자가 실행 중입니다. Ctrl+C로 멈춥니다.",
    ),
    "invalid_value": ("Invalid value: {detail}", "잘못된 값입니다: {detail}"),
    "store_unavailable": (
        "A storage dependency is unavailable: {detail}",
        "저장소에 연결할 수 없습니다: {detail}",
    ),
    "no_games": (
        "No games yet. Create one with: playwave games create --name NAME",
        "아직 게임이 없습니다. 다음 명령으로 만드세요: playwave games create --name 이름",
    ),
    "session_terminated": (
        "Session {game_session_id} ended ({reason}).",
        "세션 {game_session_id}을(를) 종료했습니다 ({reason}).",
    ),
    "session_not_live": (
        "Session {game_session_id} is not live.",
        "세션 {game_session_id}은(는) 진행 중이 아닙니다.",
    ),
}


def language() -> str:
    for variable in ("PLAYWAVE_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable)
        if value:
            return "ko" if value.lower().startswith("ko") else "en"
    return "en"


def t(message_id: str, **values: object) -> str:
    """Return the message `message_id` in the operator's language, filled with `values`."""
    english, korean = MESSAGES[message_id]
    template = korean if language() == "ko" else english
    return template.format(**values)
