"""`playwave sandbox cafe`: register and list PC cafes of the in-process sandbox partner."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import typer
from sqlalchemy.exc import IntegrityError

from playwave.cli.common import console, fail, print_json, run
from playwave.cli.i18n import MESSAGES, t
from playwave.partner.base import Cafe
from playwave.partner.sandbox import SandboxPartner
from playwave.runtime import Runtime

# Messages of these commands, registered here so the command group stays in one module.
MESSAGES.update(
    {
        "sandbox_partner_required": (
            "Sandbox cafes exist only with the in-process sandbox partner, but "
            "PLAYWAVE_PARTNER_URL is set; register the cafe with that partner instead.",
            "샌드박스 PC방은 내장 샌드박스 파트너에서만 쓸 수 있는데 PLAYWAVE_PARTNER_URL이 "
            "설정되어 있습니다. 그 파트너에 PC방을 등록하세요.",
        ),
        "cafe_ip_taken": (
            "IP {ip} is already registered to another sandbox cafe.",
            "IP {ip}는 이미 다른 샌드박스 PC방에 등록되어 있습니다.",
        ),
        "no_cafes": (
            "No sandbox cafes yet. Add one with: playwave sandbox cafe add --ip IP --name NAME "
            "--balance G_COIN",
            "아직 샌드박스 PC방이 없습니다. 다음 명령으로 추가하세요: playwave sandbox cafe add "
            "--ip IP --name 이름 --balance G코인",
        ),
    }
)

cafe_app = typer.Typer(
    help="PC cafes of the sandbox partner. / 샌드박스 파트너의 PC방", no_args_is_help=True
)


def _sandbox(runtime: Runtime) -> SandboxPartner:
    if not isinstance(runtime.partner, SandboxPartner):
        fail(t("sandbox_partner_required"))
    assert isinstance(runtime.partner, SandboxPartner)
    return runtime.partner


@cafe_app.command("add")
def add(
    ip: str = typer.Option(..., "--ip", help="External IP address the cafe's PCs connect from."),
    name: str = typer.Option(..., "--name", help="Display name of the cafe."),
    balance: int = typer.Option(..., "--balance", min=0, help="Starting G-coin balance."),
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object. / JSON으로 출력"
    ),
) -> None:
    """Register a PC cafe for an external IP, with a G-coin balance."""
    try:
        address = str(ip_address(ip.strip()))
    except ValueError:
        fail(t("invalid_value", detail=f"--ip {ip!r} is not an IPv4 or IPv6 address"))
    if not name.strip():
        fail(t("invalid_value", detail="--name must not be empty"))

    async def work(runtime: Runtime) -> Cafe:
        sandbox = _sandbox(runtime)
        try:
            return await sandbox.add_cafe(name=name.strip(), ip=address, balance=balance)
        except IntegrityError:
            fail(t("cafe_ip_taken", ip=address))
            raise

    cafe = run(work)
    if json_output:
        print_json({"cafe_id": cafe.cafe_id, "name": cafe.name, "ip": address, "balance": balance})
        return
    console.print(
        t("cafe_added", cafe_id=cafe.cafe_id, name=cafe.name, ip=address, balance=balance),
        highlight=False,
    )


@cafe_app.command("list")
def list_cafes(
    json_output: bool = typer.Option(
        False, "--json", help="Print one JSON object. / JSON으로 출력"
    ),
) -> None:
    """List the sandbox partner's cafes with their IPs and balances."""

    async def work(runtime: Runtime) -> list[dict[str, Any]]:
        return await _sandbox(runtime).list_cafes()

    cafes = run(work)
    rows = [
        {
            "cafe_id": cafe["cafe_id"],
            "name": cafe["name"],
            "ip": cafe["ip"],
            "balance": cafe["balance"],
            "suspended": cafe["suspended"],
        }
        for cafe in cafes
    ]
    if json_output:
        print_json({"cafes": rows})
        return
    if not rows:
        console.print(t("no_cafes"))
    for row in rows:
        state = "suspended" if row["suspended"] else "active"
        console.print(
            f"{row['cafe_id']}  {row['name']}  {row['ip'] or '-'}  {row['balance']}  {state}",
            highlight=False,
        )


def register(app: typer.Typer, sandbox_app: typer.Typer) -> None:
    sandbox_app.add_typer(cafe_app, name="cafe")
