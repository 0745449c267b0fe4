"""HttpPartner: retries with one idempotency key, error mapping, and the simulator's faults."""

from __future__ import annotations

import json

import httpx
import pytest

from playwave.partner.base import NotChargeable, PartnerRejected, PartnerUnavailable
from playwave.partner.http import HttpPartner
from playwave.partner.simulator import PartnerSimulator
from tests.billing.conftest import SIM_URL, fast_partner

USAGE = {"balance": 900, "charged_seconds": 60, "charged_amount": 20, "exhausted": False}


def scripted(answers: list[httpx.Response | Exception], seen: list[httpx.Request]):
    """Return a MockTransport that answers with `answers` in order and records each request."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle)


async def report(partner: HttpPartner):
    return await partner.report_usage(
        idempotency_key="usage:gs_1:60", billing_id="bill_1", total_seconds=60
    )


async def test_retry_keeps_idempotency_key():
    seen: list[httpx.Request] = []
    answers = [
        httpx.Response(500),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={**USAGE, "seconds_left": 100}),
    ]
    partner = fast_partner(SIM_URL, token="t0ken", transport=scripted(answers, seen))

    answer = await report(partner)

    assert answer.charged_seconds == 60
    assert answer.charged_amount == 20
    assert len(seen) == 3
    assert {request.headers["Idempotency-Key"] for request in seen} == {"usage:gs_1:60"}
    assert {request.headers["Authorization"] for request in seen} == {"Bearer t0ken"}
    assert json.loads(seen[0].content) == {"total_seconds": 60}
    assert seen[0].url.path == "/v1/billings/bill_1/usage"


async def test_timeouts_exhaust_attempts():
    seen: list[httpx.Request] = []
    answers: list[httpx.Response | Exception] = [httpx.ReadTimeout("slow")] * 3
    partner = fast_partner(SIM_URL, transport=scripted(answers, seen), max_attempts=3)

    with pytest.raises(PartnerUnavailable, match="after 3 attempts"):
        await report(partner)
    assert len(seen) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (402, "NOT_CHARGEABLE", NotChargeable),
        (404, "BILLING_NOT_FOUND", PartnerRejected),
        (400, "BAD_REQUEST", PartnerRejected),
        (401, "UNAUTHORIZED", PartnerUnavailable),
    ],
)
async def test_client_errors_not_retried(status: int, code: str, error: type[Exception]):
    seen: list[httpx.Request] = []
    body = {"error": {"code": code, "message": "no"}}
    partner = fast_partner(SIM_URL, transport=scripted([httpx.Response(status, json=body)], seen))

    with pytest.raises(error):
        await report(partner)
    assert len(seen) == 1


async def test_malformed_answer_is_unavailable():
    seen: list[httpx.Request] = []
    answers = [httpx.Response(200, json={**USAGE, "charged_seconds": "60"})]
    partner = fast_partner(SIM_URL, transport=scripted(answers, seen))

    with pytest.raises(PartnerUnavailable, match="charged_seconds"):
        await report(partner)


async def test_billing_id_quoted_in_path():
    seen: list[httpx.Request] = []
    answers = [httpx.Response(200, json={**USAGE, "seconds_left": None})]
    partner = fast_partner(SIM_URL, transport=scripted(answers, seen))

    await partner.report_usage(idempotency_key="k", billing_id="../admin", total_seconds=1)
    assert seen[0].url.raw_path == b"/v1/billings/..%2Fadmin/usage"


async def test_error_after_commit_applied_once(partner: HttpPartner, simulator: PartnerSimulator):
    started = await partner.start_billing(
        idempotency_key="start:ott-1",
        cafe_id="cafe_demo",
        game_id="game_1",
        pc_id="pc-1",
        game_session_id="gs_1",
    )
    simulator.faults.error_after_commit_rate = 1.0

    with pytest.raises(PartnerUnavailable):
        await partner.report_usage(
            idempotency_key="usage:gs_1:600", billing_id=started.billing_id, total_seconds=600
        )
    simulator.faults.error_after_commit_rate = 0.0
    answer = await partner.report_usage(
        idempotency_key="usage:gs_1:600", billing_id=started.billing_id, total_seconds=600
    )

    assert answer.charged_seconds == 600
    assert answer.charged_amount == 200
    assert simulator.sandbox.applications["usage:gs_1:600"] == 1
    assert simulator.requests["error_after_commit"] == 3


async def test_not_chargeable_through_simulator(partner: HttpPartner, simulator: PartnerSimulator):
    await simulator.sandbox.add_cafe(name="Empty", ip="10.1.2.3", balance=0, cafe_id="cafe_empty")

    cafe = await partner.check_ip("10.1.2.3")
    assert cafe is not None and cafe.cafe_id == "cafe_empty"
    with pytest.raises(NotChargeable, match="too low"):
        await partner.start_billing(
            idempotency_key="start:ott-2",
            cafe_id="cafe_empty",
            game_id="game_1",
            pc_id="pc-2",
            game_session_id="gs_2",
        )
    assert await partner.check_ip("10.9.9.9") is None
    assert await partner.get_billing("bill_missing") is None


async def test_down_simulator_answers_503(partner: HttpPartner, simulator: PartnerSimulator):
    simulator.faults.down = True

    with pytest.raises(PartnerUnavailable, match="HTTP 503"):
        await partner.check_ip("127.0.0.1")
    assert simulator.requests["down"] == 3


async def test_simulator_rejects_bad_requests(sim_app):
    transport = httpx.ASGITransport(app=sim_app)
    async with httpx.AsyncClient(transport=transport, base_url=SIM_URL) as client:
        no_key = await client.post("/v1/billings/bill_1/usage", json={"total_seconds": 1})
        negative = await client.post(
            "/v1/billings/bill_1/usage",
            json={"total_seconds": -1},
            headers={"Idempotency-Key": "k"},
        )
        bad_fault = await client.patch("/admin/faults", json={"error_rate": 2})
        unknown_fault = await client.patch("/admin/faults", json={"gremlins": 1})

    assert no_key.status_code == 400
    assert "Idempotency-Key" in no_key.json()["error"]["message"]
    assert negative.status_code == 400
    assert "total_seconds" in negative.json()["error"]["message"]
    assert bad_fault.status_code == 400
    assert unknown_fault.status_code == 400
