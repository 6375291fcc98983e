"""Inventory decisions as a pure function: (reservation, event, stock) -> (reservation, events, stock deltas).

  - OrderPlaced: reserve every line (quantities of the same SKU added up) if all are in stock, else
    reserve nothing and report each SKU that falls short (all or nothing).
  - ShipmentCancelled: return a reservation to stock. If the cancellation arrives first (events come in
    any order), the order is still decided when it arrives, and a reservation is released at once.
Stock never goes below zero: on_hand = initial - reserved + released.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from eventkit.events import (
    OrderEvent,
    OrderPlaced,
    ShipmentCancelled,
    Shortfall,
    StockLine,
    StockReleased,
    StockReserved,
    StockShortage,
)

CONSUMES = (OrderPlaced, ShipmentCancelled)


@dataclass(frozen=True)
class Reservation:
    order_id: str
    status: str = "new"  # new -> reserved | shortage; reserved -> released
    lines: tuple[tuple[str, int], ...] = ()  # (sku, quantity) reserved
    cancelled: str | None = None  # the shipment's cancellation reason, once known


def requested(order: OrderPlaced) -> dict[str, int]:
    wanted: Counter[str] = Counter()
    for item in order.items:
        wanted[item.sku] += item.quantity
    return dict(sorted(wanted.items()))


def decide(
    reservation: Reservation, event: OrderEvent, stock: Mapping[str, int]
) -> tuple[Reservation, list[OrderEvent], dict[str, int]]:
    """`stock` holds on-hand units for every SKU the event mentions; returns deltas to apply to it."""
    out: list[OrderEvent] = []
    deltas: dict[str, int] = {}
    oid = reservation.order_id
    if isinstance(event, OrderPlaced) and reservation.status == "new":
        wanted = requested(event)
        missing = [
            Shortfall(sku=sku, requested=qty, available=stock[sku]) for sku, qty in wanted.items() if stock[sku] < qty
        ]
        if missing:
            out.append(StockShortage.create(order_id=oid, missing=tuple(missing)))
            reservation = replace(reservation, status="shortage")
        else:
            out.append(
                StockReserved.create(order_id=oid, lines=tuple(StockLine(sku=s, quantity=q) for s, q in wanted.items()))
            )
            deltas = {sku: -qty for sku, qty in wanted.items()}
            reservation = replace(reservation, status="reserved", lines=tuple(wanted.items()))
    elif isinstance(event, ShipmentCancelled) and reservation.cancelled is None:
        reservation = replace(reservation, cancelled=event.reason)
    if reservation.status == "reserved" and reservation.cancelled is not None:
        out.append(
            StockReleased.create(
                order_id=oid,
                lines=tuple(StockLine(sku=s, quantity=q) for s, q in reservation.lines),
                reason=f"shipment cancelled: {reservation.cancelled}",
            )
        )
        for sku, qty in reservation.lines:
            deltas[sku] = deltas.get(sku, 0) + qty
        reservation = replace(reservation, status="released")
    return reservation, out, deltas
