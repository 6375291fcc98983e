"""The order view: which orders this service accepted, and each order's timeline of events.

The timeline is a projection of every topic matching the catalogue's order-events pattern, so an event
type this code has never heard of (a new service's) still appears, named by its Avro record.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventkit.consumer import Received
from eventkit.events import (
    Event,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentCancelled,
    ShipmentDispatched,
    ShipmentScheduled,
    StockReleased,
    StockReserved,
    StockShortage,
    UnknownEvent,
)
from eventkit.store import StateStore

SCHEMA = """
create table if not exists accepted (
    order_id        text primary key,
    customer_id     text not null,
    idempotency_key text,
    body_sha256     text not null,
    accepted_at     text not null
);
create unique index if not exists accepted_key on accepted (customer_id, idempotency_key);
create table if not exists timeline (
    seq         integer primary key autoincrement,
    event_id    text not null unique,
    order_id    text not null,
    type        text not null,
    occurred_at text not null,
    entry       text not null
);
create index if not exists timeline_order on timeline (order_id, seq);
"""

FINAL_STATES = {ShipmentDispatched.RECORD: "dispatched", ShipmentCancelled.RECORD: "cancelled"}
# A final order's story is complete when it holds one event of each group (every order is decided by
# accounting, inventory and shipping) and, if it was cancelled, the undoing of what had been done.
STORY = (
    frozenset({OrderPlaced.RECORD}),
    frozenset({PaymentCaptured.RECORD, PaymentDeclined.RECORD}),
    frozenset({StockReserved.RECORD, StockShortage.RECORD}),
    frozenset({ShipmentScheduled.RECORD}),
)
UNDONE_ON_CANCEL = {PaymentCaptured.RECORD: PaymentRefunded.RECORD, StockReserved.RECORD: StockReleased.RECORD}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # date, time, UUID... from another service's schema


def to_entry(event: Event | UnknownEvent) -> dict[str, Any] | None:
    """A timeline entry: `type`, `event_id`, `occurred_at`, then the event's own fields (JSON-ready)."""
    if isinstance(event, UnknownEvent):
        fields, record = dict(event.fields), event.record_name
    else:
        fields, record = dataclasses.asdict(event), event.RECORD
    if not fields.get("order_id") or not fields.get("event_id"):
        return None
    fields.pop("order_id")
    return {"type": record, **_plain(fields)}


def status_of(types: Iterable[str]) -> str:
    """`pending` until a final event is in the timeline; the first final event decides."""
    for record in types:
        if record in FINAL_STATES:
            return FINAL_STATES[record]
    return "pending"


def awaited(types: Iterable[str]) -> set[str]:
    """What a final order's timeline still lacks to tell its whole story (empty while pending): events
    of other topics can reach the view after the final one, and a cancellation's refund and stock
    release come after it. Each name stands for its group (e.g. "PaymentCaptured | PaymentDeclined")."""
    kinds = list(types)
    status, seen = status_of(kinds), set(kinds)
    if status == "pending":
        return set()
    missing = {" | ".join(sorted(group)) for group in STORY if not group & seen}
    if status == "cancelled":
        missing |= {undo for done, undo in UNDONE_ON_CANCEL.items() if done in seen and undo not in seen}
    return missing


def open_store(path) -> StateStore:
    return StateStore(path, SCHEMA)


@dataclasses.dataclass(frozen=True)
class Stored:
    """One timeline row as committed: `seq` is its place in this instance's arrival order."""

    seq: int
    order_id: str
    event_id: str
    type: str
    text: str  # the entry as JSON, exactly as GET /orders/{id} returns it
    occurred_at: str = ""
    committed_at: float | None = None  # wall clock, for a row that was just committed (not one read back)


def project(store: StateStore, received: Received, on_stored: Callable[[Stored], None] | None = None) -> list[Event]:
    """Consumer handler: add the event to its order's timeline (once; redelivery is a no-op).

    `on_stored` hears of each new row after its transaction committed (never of a redelivered one).
    """
    entry = to_entry(received.event)
    if entry is None:
        return []
    order_id = getattr(received.event, "order_id", None) or received.event.fields["order_id"]  # type: ignore[union-attr]
    text = json.dumps(entry)
    with store.transaction() as db:
        cursor = db.execute(
            "insert or ignore into timeline (event_id, order_id, type, occurred_at, entry) values (?, ?, ?, ?, ?)",
            (entry["event_id"], order_id, entry["type"], entry["occurred_at"], text),
        )
        seq = cursor.lastrowid if cursor.rowcount == 1 else None
    if seq is not None and on_stored is not None:
        on_stored(Stored(seq, order_id, entry["event_id"], entry["type"], text, entry["occurred_at"], time.time()))
    return []


def accepted_order(db: sqlite3.Connection, customer_id: str, key: str) -> tuple[str, str] | None:
    row = db.execute(
        "select order_id, body_sha256 from accepted where customer_id = ? and idempotency_key = ?",
        (customer_id, key),
    ).fetchone()
    return (row[0], row[1]) if row else None


def record_accepted(
    store: StateStore, order_id: str, customer_id: str, key: str | None, digest: str, at: datetime
) -> None:
    with store.transaction() as db:
        db.execute(
            "insert or ignore into accepted values (?, ?, ?, ?, ?)",
            (order_id, customer_id, key, digest, at.isoformat(timespec="milliseconds")),
        )


def order_view(db: sqlite3.Connection, order_id: str) -> dict[str, Any] | None:
    entries = [
        json.loads(row[0])
        for row in db.execute("select entry from timeline where order_id = ? order by occurred_at, seq", (order_id,))
    ]
    if not entries and db.execute("select 1 from accepted where order_id = ?", (order_id,)).fetchone() is None:
        return None
    return {"order_id": order_id, "status": status_of(e["type"] for e in entries), "timeline": entries}


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a new follower of an order starts from: the stored rows in arrival (seq) order."""

    known: bool
    rows: list[Stored]
    after_seq: int  # rows up to this seq were seen by the client already (0: none)


def snapshot(db: sqlite3.Connection, order_id: str, after_event_id: str | None = None) -> Snapshot:
    """The order's timeline rows by seq; `after_event_id` (an event of this order) marks what was seen.

    An `after_event_id` this instance does not know (yet) counts as nothing seen: the client gets the
    whole timeline again, never a gap.
    """
    rows = [
        Stored(seq, order_id, event_id, kind, text)
        for seq, event_id, kind, text in db.execute(
            "select seq, event_id, type, entry from timeline where order_id = ? order by seq", (order_id,)
        )
    ]
    after_seq = next((row.seq for row in rows if row.event_id == after_event_id), 0) if after_event_id else 0
    known = bool(rows) or db.execute("select 1 from accepted where order_id = ?", (order_id,)).fetchone() is not None
    return Snapshot(known, rows, after_seq)
