"""Accounting's edges: settings, SQLite state and ledger, the consumer runner, /health and /ledger."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict
from decimal import Decimal

from fastapi import FastAPI

from accounting_service.domain import CONSUMES, Payment, decide
from eventkit.events import OrderEvent, PaymentCaptured, PaymentRefunded
from eventkit.service import Apply, consumer_app, inbox_runner
from eventkit.settings import ServiceSettings
from eventkit.store import StateStore, keyed_table, load_doc, save_doc

NAME = "accounting"

LEDGER = """
create table if not exists ledger (
    order_id    text not null,
    kind        text not null,   -- 'charge' | 'refund'
    customer_id text not null,
    amount      text not null,   -- exact decimal, as text
    currency    text not null,
    primary key (order_id, kind)
);
create index if not exists ledger_customer on ledger (customer_id);
"""


class AccountingSettings(ServiceSettings):
    port: int = 8002
    group_id: str = "accounting"
    accounting_credit_limit: Decimal = Decimal("5000.000")


def open_store(settings: AccountingSettings) -> StateStore:
    return StateStore(settings.state_dir / f"{NAME}.db", keyed_table("payments") + LEDGER)


def _load(db: sqlite3.Connection, order_id: str) -> Payment:
    doc = load_doc(db, "payments", order_id)
    if doc is None:
        return Payment(order_id=order_id)
    if doc["amount"] is not None:
        doc["amount"] = Decimal(doc["amount"])
    return Payment(**doc)


def make_apply(credit_limit: Decimal) -> Apply:
    def apply(db: sqlite3.Connection, event: OrderEvent) -> list[OrderEvent]:
        payment, out = decide(_load(db, event.order_id), event, credit_limit)
        save_doc(db, "payments", event.order_id, asdict(payment))
        for e in out:
            if isinstance(e, PaymentCaptured | PaymentRefunded):
                kind = "charge" if isinstance(e, PaymentCaptured) else "refund"
                db.execute(
                    "insert or ignore into ledger values (?, ?, ?, ?, ?)",
                    (e.order_id, kind, e.customer_id, str(e.amount), e.currency),
                )
        return out

    return apply


def ledger_for(db: sqlite3.Connection, customer_id: str) -> dict[str, object]:
    rows = db.execute(
        "select order_id, kind, amount, currency from ledger where customer_id = ? order by rowid", (customer_id,)
    ).fetchall()
    balance = sum((Decimal(a) if k == "charge" else -Decimal(a) for _, k, a, _ in rows), Decimal(0))
    return {
        "customer_id": customer_id,
        "balance": str(balance),
        "entries": [{"order_id": o, "kind": k, "amount": a, "currency": c} for o, k, a, c in rows],
    }


def create_app(settings: AccountingSettings) -> FastAPI:
    store = open_store(settings)

    make_runner = inbox_runner(
        settings, NAME, settings.group_id, CONSUMES, store, make_apply(settings.accounting_credit_limit)
    )

    def counts() -> dict[str, object]:
        db = store.read()
        rows = db.execute("select json_extract(data, '$.status'), count(*) from payments group by 1").fetchall()
        return {"payments": dict(rows), "redeliveries": store.redeliveries()}

    app = consumer_app(NAME, make_runner, counts)

    @app.get("/ledger/{customer_id}")
    def ledger(customer_id: str) -> dict[str, object]:
        """A customer's ledger: charges and refunds, with the exact balance."""
        return ledger_for(store.read(), customer_id)

    return app
