"""Inventory's edges: settings, the initial stock file, SQLite stock and reservations, runner, /health, /stock."""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from eventkit.catalogue import load_catalogue
from eventkit.consumer import ConsumerRunner, Received
from eventkit.events import Event, OrderEvent, OrderPlaced
from eventkit.producer import EventProducer
from eventkit.serde import AvroCodec
from eventkit.service import consumer_app
from eventkit.settings import ServiceSettings
from eventkit.store import StateStore, keyed_table, load_doc, save_doc
from inventory_service.domain import CONSUMES, Reservation, decide

NAME = "inventory"

STOCK = """
create table if not exists stock (
    sku     text primary key,
    initial integer not null,   -- from the stock file (or the default) when the SKU was first seen
    on_hand integer not null check (on_hand >= 0)
);
"""


class InventorySettings(ServiceSettings):
    port: int = 8003
    group_id: str = "inventory"
    # sku,on_hand rows; the row with sku "*" gives the level of every SKU the file does not list.
    inventory_stock_file: Path = Path(__file__).with_name("initial_stock.csv")


def read_stock_file(path: Path) -> tuple[dict[str, int], int]:
    levels: dict[str, int] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            levels[row["sku"].strip()] = int(row["on_hand"])
    return levels, levels.pop("*", 0)


def open_store(settings: InventorySettings) -> StateStore:
    return StateStore(settings.state_dir / f"{NAME}.db", keyed_table("reservations") + STOCK)


def make_handler(store: StateStore, levels: dict[str, int], default: int):
    def stock_for(db: sqlite3.Connection, skus: list[str]) -> dict[str, int]:
        for sku in skus:
            start = levels.get(sku, default)
            db.execute("insert or ignore into stock values (?, ?, ?)", (sku, start, start))
        marks = ",".join("?" * len(skus))
        return dict(db.execute(f"select sku, on_hand from stock where sku in ({marks})", skus).fetchall())

    def apply(db: sqlite3.Connection, event: OrderEvent) -> list[OrderEvent]:
        doc = load_doc(db, "reservations", event.order_id)
        reservation = Reservation(**{**doc, "lines": tuple(map(tuple, doc["lines"]))}) if doc else None
        reservation = reservation or Reservation(order_id=event.order_id)
        skus = sorted({i.sku for i in event.items}) if isinstance(event, OrderPlaced) else []
        reservation, out, deltas = decide(reservation, event, stock_for(db, skus) if skus else {})
        for sku, delta in deltas.items():
            db.execute("update stock set on_hand = on_hand + ? where sku = ?", (delta, sku))
        save_doc(db, "reservations", event.order_id, asdict(reservation))
        return out

    def handle(received: Received) -> list[Event]:
        event = received.event
        if not isinstance(event, CONSUMES):
            return []
        return store.process(event.event_id, lambda db: apply(db, event))

    return handle


def create_app(settings: InventorySettings) -> FastAPI:
    catalogue = load_catalogue(settings.schemas_dir)
    store = open_store(settings)
    levels, default = read_stock_file(settings.inventory_stock_file)

    def make_runner() -> ConsumerRunner:
        codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
        return ConsumerRunner(
            settings=settings,
            producer=EventProducer(settings, codec, client_id=NAME),
            service=NAME,
            group_id=settings.group_id,
            topics=[catalogue.topic_for(cls.RECORD).name for cls in CONSUMES],
            on_confirmed=store.confirm,
            handler=make_handler(store, levels, default),
        )

    def counts() -> dict[str, object]:
        rows = (
            store.read()
            .execute("select json_extract(data, '$.status'), count(*) from reservations group by 1")
            .fetchall()
        )
        return {"reservations": dict(rows), "redeliveries": store.redeliveries()}

    app = consumer_app(NAME, make_runner, counts)

    @app.get("/stock/{sku}")
    def stock(sku: str) -> JSONResponse:
        """On-hand units of one SKU and the level it started from."""
        row = store.read().execute("select initial, on_hand from stock where sku = ?", (sku,)).fetchone()
        if row is None:
            start = levels.get(sku, default)
            return JSONResponse({"sku": sku, "initial": start, "on_hand": start})
        return JSONResponse({"sku": sku, "initial": row[0], "on_hand": row[1]})

    return app
