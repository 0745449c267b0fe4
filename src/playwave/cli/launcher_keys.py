"""`playwave launcher-keys`: issue, revoke and list the HMAC keys launchers sign requests with."""

from __future__ import annotations

import typer

from playwave.cli.common import console, fail, print_json, run
from playwave.cli.i18n import MESSAGES, t
from playwave.clock import to_iso
from playwave.runtime import Runtime
from playwave.services.launcher_keys import LauncherKeys
from playwave.stores.base import LauncherKey

# Messages of these commands, registered here so the command group stays in one module.
MESSAGES.update(
    {
        "launcher_key_created": (
            "Launcher key created — the secret is shown only once, store it now:",
            "런처 키를 만들었습니다. 비밀 값은 다시 표시되지 않으니 지금 보관하세요:",
        ),
        "launcher_key_revoked": (
            "Launcher key {key_id} revoked; requests signed with it are rejected from now on.",
            "런처 키 {key_id}를 폐기했습니다. 이제 이 키로 서명한 요청은 거부됩니다.",
        ),
        "launcher_key_not_found": (
            "Launcher key {key_id} was not found or is already revoked.",
            "런처 키 {key_id}를 찾을 수 없거나 이미 폐기되었습니다.",
        ),
        "no_launcher_keys": (
            "No launcher keys yet. Create one with: playwave launcher-keys create",
            "아직 런처 키가 없습니다. 다음 명령으로 만드세요: playwave launcher-keys create",
        ),
    }
)

launcher_keys_app = typer.Typer(
    help="HMAC keys that launchers sign requests with. / 런처 요청 서명용 HMAC 키",
    no_args_is_help=True,
)


def _service(runtime: Runtime) -> LauncherKeys:
    return LauncherKeys(
        runtime.records, runtime.live, runtime.clock, runtime.settings.resolve_secret_key()
    )


@launcher_keys_app.command("create")
def create(
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object. / JSON으로 출력"
    ),
) -> None:
    """Issue a launcher key; its secret is printed once and never stored."""

    async def work(runtime: Runtime) -> tuple[LauncherKey, str]:
        return await _service(runtime).issue()

    key, secret = run(work)
    if json_output:
        print_json({"key_id": key.key_id, "secret": secret, "created_at": to_iso(key.created_at)})
        return
    console.print(t("launcher_key_created"))
    console.print(f"key_id: {key.key_id}\nsecret: {secret}", highlight=False)


@launcher_keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="key_id to revoke.")) -> None:
    """Revoke a launcher key at once; other active keys keep working."""
    if not run(lambda runtime: _service(runtime).revoke(key_id)):
        fail(t("launcher_key_not_found", key_id=key_id))
    console.print(t("launcher_key_revoked", key_id=key_id), highlight=False)


@launcher_keys_app.command("list")
def list_keys(
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object. / JSON으로 출력"
    ),
) -> None:
    """List launcher keys (ids and dates only; secrets are never stored)."""
    keys = run(lambda runtime: _service(runtime).list())
    rows = [
        {
            "key_id": key.key_id,
            "created_at": to_iso(key.created_at),
            "revoked_at": to_iso(key.revoked_at) if key.revoked_at else None,
        }
        for key in keys
    ]
    if json_output:
        print_json({"launcher_keys": rows})
        return
    if not rows:
        console.print(t("no_launcher_keys"))
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        console.print(f"{row['key_id']}  created {row['created_at']}  {state}", highlight=False)


def register(app: typer.Typer, sandbox_app: typer.Typer) -> None:
    app.add_typer(launcher_keys_app, name="launcher-keys")
