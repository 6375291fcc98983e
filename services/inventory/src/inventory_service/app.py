"""Inventory's edges: settings, the initial stock file, SQLite stock and reservations, runner, /health, /stock."""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from eventkit.events import OrderEvent, OrderPlaced
from eventkit.service import Apply, consumer_app, inbox_runner
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


def make_apply(levels: dict[str, int], default: int) -> Apply:
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

    return apply


def create_app(settings: InventorySettings) -> FastAPI:
    store = open_store(settings)
    levels, default = read_stock_file(settings.inventory_stock_file)

    make_runner = inbox_runner(settings, NAME, settings.group_id, CONSUMES, store, make_apply(levels, default))

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
