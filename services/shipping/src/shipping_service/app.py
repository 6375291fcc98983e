"""Shipping's edges: settings, SQLite state, the Kafka consumer runner and /health."""

from __future__ import annotations

import dataclasses
import sqlite3

from eventkit.catalogue import load_catalogue
from eventkit.consumer import ConsumerRunner, Received
from eventkit.events import Event, OrderEvent
from eventkit.producer import EventProducer
from eventkit.serde import AvroCodec
from eventkit.service import consumer_app
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


def make_handler(store: StateStore, require_stock: bool):
    def apply(db: sqlite3.Connection, event: OrderEvent) -> list[OrderEvent]:
        doc = load_doc(db, "shipments", event.order_id)
        shipment = Shipment(**doc) if doc else Shipment(order_id=event.order_id)
        shipment, out = decide(shipment, event, require_stock)
        save_doc(db, "shipments", event.order_id, dataclasses.asdict(shipment))
        return out

    def handle(received: Received) -> list[Event]:
        event = received.event
        if not isinstance(event, CONSUMES):
            return []
        return store.process(event.event_id, lambda db: apply(db, event))

    return handle


def create_app(settings: ShippingSettings):
    catalogue = load_catalogue(settings.schemas_dir)
    store = open_store(settings)

    def make_runner() -> ConsumerRunner:
        codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
        return ConsumerRunner(
            settings=settings,
            producer=EventProducer(settings, codec, client_id=NAME),
            service=NAME,
            group_id=settings.group_id,
            topics=[catalogue.topic_for(cls.RECORD).name for cls in CONSUMES],
            on_confirmed=store.confirm,
            handler=make_handler(store, settings.shipping_require_stock),
        )

    def counts() -> dict[str, object]:
        rows = (
            store.read().execute("select json_extract(data, '$.status'), count(*) from shipments group by 1").fetchall()
        )
        return {"shipments": dict(rows), "redeliveries": store.redeliveries()}

    return consumer_app(NAME, make_runner, counts)
