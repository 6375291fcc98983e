"""Shipping's edges: settings, SQLite state, the Kafka consumer runner and /health."""

from __future__ import annotations

import dataclasses
import sqlite3

from eventkit.events import OrderEvent
from eventkit.service import Apply, consumer_app, inbox_runner
from eventkit.settings import ServiceSettings
from eventkit.store import StateStore, keyed_table, load_doc, save_doc
from shipping_service.domain import CONSUMES, Shipment, decide

NAME = "shipping"


class ShippingSettings(ServiceSettings):
    port: int = 8001
    group_id: str = "shipping"
    # Dispatch waits for StockReserved; turn off only where no inventory service runs.
    shipping_require_stock: bool = True


def open_store(settings: ShippingSettings) -> StateStore:
    return StateStore(settings.state_dir / f"{NAME}.db", keyed_table("shipments"))


def make_apply(require_stock: bool) -> Apply:
    def apply(db: sqlite3.Connection, event: OrderEvent) -> list[OrderEvent]:
        doc = load_doc(db, "shipments", event.order_id)
        shipment = Shipment(**doc) if doc else Shipment(order_id=event.order_id)
        shipment, out = decide(shipment, event, require_stock)
        save_doc(db, "shipments", event.order_id, dataclasses.asdict(shipment))
        return out

    return apply


def create_app(settings: ShippingSettings):
    store = open_store(settings)

    make_runner = inbox_runner(
        settings, NAME, settings.group_id, CONSUMES, store, make_apply(settings.shipping_require_stock)
    )

    def counts() -> dict[str, object]:
        rows = (
            store.read().execute("select json_extract(data, '$.status'), count(*) from shipments group by 1").fetchall()
        )
        return {"shipments": dict(rows), "redeliveries": store.redeliveries()}

    return consumer_app(NAME, make_runner, counts)
