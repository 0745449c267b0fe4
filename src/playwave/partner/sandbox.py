"""The sandbox partner: cafes and G-coin wallets in SQL tables, behaving like the real partner.

It runs in-process on the embedded default (its tables live in the records database), and the
partner simulator serves it over HTTP. Each idempotency key is applied once: its answer is stored
in the same transaction as the charge and returned again on a retry.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import Counter
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from playwave.domain.billing import charge_difference, charge_for, seconds_covered
from playwave.partner.base import (
    BillingStarted,
    BillingState,
    Cafe,
    NotChargeable,
    PartnerRejected,
    PartnerUnavailable,
    UsageReported,
)
from playwave.partner.sandbox_tables import sandbox_applied, sandbox_billings, sandbox_cafes
from playwave.stores.sql.engine import is_unavailable, translate_errors

DEMO_CAFE_ID = "cafe_demo"
DEMO_CAFE_NAME = "PlayWave Demo PC Cafe"
DEMO_BALANCE = 1_000_000
DEFAULT_PRICE_PER_HOUR = 1_200
MINIMUM_START_SECONDS = 60


class SandboxPartner:
    """`Partner` on SQL tables.

    A start needs a balance that covers `MINIMUM_START_SECONDS` of play at the game's price.
    Loopback clients are the demo cafe when `loopback_cafe` is set, so that a newcomer can run
    the whole flow on one machine.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        loopback_cafe: bool = True,
        price_per_hour: int = DEFAULT_PRICE_PER_HOUR,
        prices: dict[str, int] | None = None,
    ) -> None:
        self.engine = engine
        self.loopback_cafe = loopback_cafe
        self.default_price = price_per_hour
        self.prices = dict(prices or {})
        # Times each idempotency key's step committed in this process; a repeat must never
        # raise a count above 1.
        self.applications: Counter[str] = Counter()

    async def close(self) -> None:
        return None

    def price_for(self, game_id: str) -> int:
        return self.prices.get(game_id, self.default_price)

    # Cafe administration (CLI and simulator).

    @translate_errors
    async def add_cafe(
        self, *, name: str, ip: str | None, balance: int, cafe_id: str | None = None
    ) -> Cafe:
        if balance < 0:
            raise ValueError("balance must not be negative")
        cafe = Cafe(cafe_id=cafe_id or f"cafe_{secrets.token_hex(6)}", name=name)
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(sandbox_cafes).values(
                    cafe_id=cafe.cafe_id, name=name, ip=ip, balance=balance, suspended=False
                )
            )
        return cafe

    @translate_errors
    async def set_balance(self, cafe_id: str, balance: int) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(sandbox_cafes)
                .where(sandbox_cafes.c.cafe_id == cafe_id)
                .values(balance=balance)
            )
        return result.rowcount == 1

    @translate_errors
    async def set_suspended(self, cafe_id: str, suspended: bool) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(sandbox_cafes)
                .where(sandbox_cafes.c.cafe_id == cafe_id)
                .values(suspended=suspended)
            )
        return result.rowcount == 1

    @translate_errors
    async def get_balance(self, cafe_id: str) -> int | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    select(sandbox_cafes.c.balance).where(sandbox_cafes.c.cafe_id == cafe_id)
                )
            ).first()
        return row[0] if row else None

    @translate_errors
    async def list_cafes(self) -> list[dict[str, Any]]:
        async with self.engine.begin() as connection:
            rows = await connection.execute(select(sandbox_cafes).order_by(sandbox_cafes.c.cafe_id))
            return [dict(row._mapping) for row in rows]

    @translate_errors
    async def totals(self) -> dict[str, Any]:
        """Return what was charged: per billing session, per cafe and over the applied keys.

        `applied_amount` sums the G-coin of every applied idempotency key and must equal the sum
        of the billing sessions' `charged_amount`; a charge applied twice would break that.
        """
        async with self.engine.begin() as connection:
            billings = [
                dict(row._mapping)
                for row in await connection.execute(
                    select(sandbox_billings).order_by(sandbox_billings.c.billing_id)
                )
            ]
            cafes = [
                {"cafe_id": row.cafe_id, "balance": row.balance, "suspended": row.suspended}
                for row in await connection.execute(
                    select(sandbox_cafes).order_by(sandbox_cafes.c.cafe_id)
                )
            ]
            applied = (
                await connection.execute(
                    select(func.count(), func.coalesce(func.sum(sandbox_applied.c.amount), 0))
                )
            ).one()
            keys = [
                row.idempotency_key
                for row in await connection.execute(
                    select(sandbox_applied.c.idempotency_key).order_by(
                        sandbox_applied.c.idempotency_key
                    )
                )
            ]
        return {
            "billings": billings,
            "cafes": cafes,
            "applied_keys": int(applied[0]),
            "applied_amount": int(applied[1]),
            "keys": keys,
        }

    # The partner interface.

    @translate_errors
    async def get_billing(self, billing_id: str) -> BillingState | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(
                    select(sandbox_billings).where(sandbox_billings.c.billing_id == billing_id)
                )
            ).first()
        if row is None:
            return None
        return BillingState(
            billing_id=row.billing_id,
            cafe_id=row.cafe_id,
            game_session_id=row.game_session_id,
            price_per_hour=row.price_per_hour,
            charged_seconds=row.charged_seconds,
            charged_amount=row.charged_amount,
            exhausted=row.exhausted,
            stopped=row.stopped,
        )

    @translate_errors
    async def check_ip(self, ip: str) -> Cafe | None:
        async with self.engine.begin() as connection:
            row = (
                await connection.execute(select(sandbox_cafes).where(sandbox_cafes.c.ip == ip))
            ).first()
            if row is not None:
                return Cafe(cafe_id=row.cafe_id, name=row.name)
            if self.loopback_cafe and _is_loopback(ip):
                await self._ensure_demo_cafe(connection)
                return Cafe(cafe_id=DEMO_CAFE_ID, name=DEMO_CAFE_NAME)
        return None

    async def _ensure_demo_cafe(self, connection: AsyncConnection) -> None:
        exists = (
            await connection.execute(
                select(sandbox_cafes.c.cafe_id).where(sandbox_cafes.c.cafe_id == DEMO_CAFE_ID)
            )
        ).first()
        if exists is None:
            await connection.execute(
                insert(sandbox_cafes).values(
                    cafe_id=DEMO_CAFE_ID,
                    name=DEMO_CAFE_NAME,
                    ip=None,
                    balance=DEMO_BALANCE,
                    suspended=False,
                )
            )

    async def start_billing(
        self,
        *,
        idempotency_key: str,
        cafe_id: str,
        game_id: str,
        pc_id: str,
        game_session_id: str,
    ) -> BillingStarted:
        answer = await self._apply(
            idempotency_key,
            lambda connection: self._start(connection, cafe_id, game_id, game_session_id),
        )
        if answer.get("refused"):
            raise NotChargeable(answer["refused"])
        return BillingStarted(
            answer["billing_id"],
            answer["balance"],
            answer["seconds_left"],
            answer.get("price_per_hour"),
        )

    async def _start(
        self, connection: AsyncConnection, cafe_id: str, game_id: str, game_session_id: str
    ) -> tuple[dict[str, Any], str | None, int]:
        if cafe_id == DEMO_CAFE_ID and self.loopback_cafe:
            await self._ensure_demo_cafe(connection)
        cafe = (
            await connection.execute(
                select(sandbox_cafes).where(sandbox_cafes.c.cafe_id == cafe_id)
            )
        ).first()
        price = self.price_for(game_id)
        if cafe is None:
            return {"refused": f"cafe {cafe_id} is not registered"}, None, 0
        if cafe.suspended:
            return {"refused": f"cafe {cafe_id} is suspended"}, None, 0
        if cafe.balance < charge_for(MINIMUM_START_SECONDS, price):
            return {"refused": f"cafe {cafe_id} balance {cafe.balance} is too low"}, None, 0

        billing_id = f"bill_{secrets.token_hex(10)}"
        await connection.execute(
            insert(sandbox_billings).values(
                billing_id=billing_id,
                cafe_id=cafe_id,
                game_id=game_id,
                game_session_id=game_session_id,
                price_per_hour=price,
                charged_seconds=0,
                charged_amount=0,
                exhausted=False,
                stopped=False,
            )
        )
        answer = {
            "billing_id": billing_id,
            "balance": cafe.balance,
            "seconds_left": _seconds_left(cafe.balance, price, 0),
            "price_per_hour": price,
        }
        return answer, billing_id, 0

    async def report_usage(
        self, *, idempotency_key: str, billing_id: str, total_seconds: int
    ) -> UsageReported:
        answer = await self._apply(
            idempotency_key,
            lambda connection: self._charge(connection, billing_id, total_seconds, stop=False),
        )
        return _usage(answer)

    async def stop_billing(
        self, *, idempotency_key: str, billing_id: str, billable_seconds: int
    ) -> UsageReported:
        answer = await self._apply(
            idempotency_key,
            lambda connection: self._charge(connection, billing_id, billable_seconds, stop=True),
        )
        return _usage(answer)

    async def _charge(
        self, connection: AsyncConnection, billing_id: str, total_seconds: int, *, stop: bool
    ) -> tuple[dict[str, Any], str | None, int]:
        billing = (
            await connection.execute(
                select(sandbox_billings).where(sandbox_billings.c.billing_id == billing_id)
            )
        ).first()
        if billing is None:
            raise PartnerRejected(f"billing {billing_id} does not exist")
        cafe = (
            await connection.execute(
                select(sandbox_cafes).where(sandbox_cafes.c.cafe_id == billing.cafe_id)
            )
        ).first()
        assert cafe is not None

        target = _settled_total(
            billing.charged_seconds,
            total_seconds,
            stop=stop,
            stopped=billing.stopped,
            exhausted=billing.exhausted,
        )
        price = billing.price_per_hour
        owed = charge_difference(billing.charged_seconds, target, price)
        exhausted = billing.exhausted
        if owed > cafe.balance:
            target = min(target, seconds_covered(cafe.balance, price, billing.charged_seconds))
            owed = charge_difference(billing.charged_seconds, target, price)
            exhausted = True

        balance = cafe.balance - owed
        charged_amount = billing.charged_amount + owed
        await connection.execute(
            update(sandbox_cafes)
            .where(sandbox_cafes.c.cafe_id == cafe.cafe_id)
            .values(balance=balance)
        )
        await connection.execute(
            update(sandbox_billings)
            .where(sandbox_billings.c.billing_id == billing_id)
            .values(
                charged_seconds=target,
                charged_amount=charged_amount,
                exhausted=exhausted,
                stopped=billing.stopped or stop,
            )
        )
        answer = {
            "balance": balance,
            "charged_seconds": target,
            "charged_amount": charged_amount,
            "exhausted": exhausted,
            "seconds_left": 0 if exhausted else _seconds_left(balance, price, target),
        }
        return answer, billing_id, owed

    async def _apply(self, idempotency_key: str, step: Any) -> dict[str, Any]:
        """Run `step` once per idempotency key; a repeat returns the stored answer."""
        try:
            async with self.engine.begin() as connection:
                stored = (
                    await connection.execute(
                        select(sandbox_applied.c.answer).where(
                            sandbox_applied.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
                if stored is not None:
                    return dict(stored[0])
                answer, billing_id, amount = await step(connection)
                if not answer.get("refused"):
                    await connection.execute(
                        insert(sandbox_applied).values(
                            idempotency_key=idempotency_key,
                            billing_id=billing_id,
                            amount=amount,
                            answer=answer,
                        )
                    )
            if not answer.get("refused"):
                # Counted only once the transaction committed, so the count is of real charges.
                self.applications[idempotency_key] += 1
            return answer
        except IntegrityError:
            # A concurrent call with the same key committed first; return its answer.
            async with self.engine.begin() as connection:
                stored = (
                    await connection.execute(
                        select(sandbox_applied.c.answer).where(
                            sandbox_applied.c.idempotency_key == idempotency_key
                        )
                    )
                ).first()
            if stored is None:
                raise
            return dict(stored[0])
        except (PartnerRejected, NotChargeable):
            raise
        except Exception as error:
            if is_unavailable(error):
                raise PartnerUnavailable(f"sandbox wallet store unavailable: {error}") from error
            raise


def _usage(answer: dict[str, Any]) -> UsageReported:
    return UsageReported(
        balance=answer["balance"],
        charged_seconds=answer["charged_seconds"],
        exhausted=answer["exhausted"],
        seconds_left=answer["seconds_left"],
        charged_amount=answer.get("charged_amount"),
    )


def _settled_total(
    charged_seconds: int, total_seconds: int, *, stop: bool, stopped: bool, exhausted: bool
) -> int:
    """Return the cumulative seconds a call moves a billing session to, before the balance check.

    A usage report never moves a session backwards. A stop sets the final total, which may be
    lower (a refund) but never higher than what an exhausted wallet covered. Once stopped, a
    session charges no more, so each second is paid for at most once.
    """
    if stopped:
        return charged_seconds
    if stop:
        return min(total_seconds, charged_seconds) if exhausted else total_seconds
    if exhausted:
        return charged_seconds
    return max(total_seconds, charged_seconds)


def _seconds_left(balance: int, price: int, charged_seconds: int) -> int | None:
    if price == 0:
        return None
    return seconds_covered(balance, price, charged_seconds) - charged_seconds


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False
