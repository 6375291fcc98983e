"""Shipping decisions as a pure function: (shipment, event) -> (shipment, events to emit).

Facts arrive in any order; each one is recorded, then the rules below run on the facts:
  1. an order that was placed and is not yet decided gets ShipmentScheduled;
  2. a declined payment or a stock shortage cancels the shipment (final);
  3. a scheduled shipment with a captured payment and reserved stock is dispatched (final).
With `require_stock=False` (no inventory service deployed) rule 3 does not wait for stock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from eventkit.events import (
    OrderEvent,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    ShipmentCancelled,
    ShipmentDispatched,
    ShipmentScheduled,
    StockReserved,
    StockShortage,
)

_SHIPMENT_NS = uuid.UUID("0c4a8d6e-3f7b-4e21-9a58-6b2d1e0f9c33")

CONSUMES = (OrderPlaced, PaymentCaptured, PaymentDeclined, StockReserved, StockShortage)


@dataclass(frozen=True)
class Shipment:
    order_id: str
    placed: bool = False
    country: str | None = None
    payment: str | None = None  # "captured" | "declined"
    payment_reason: str | None = None
    stock: str | None = None  # "reserved" | "shortage"
    status: str = "new"  # new -> scheduled -> dispatched | cancelled

    @property
    def shipment_id(self) -> str:
        return str(uuid.uuid5(_SHIPMENT_NS, self.order_id))

    @property
    def final(self) -> bool:
        return self.status in ("dispatched", "cancelled")


def record(shipment: Shipment, event: OrderEvent) -> Shipment:
    match event:
        case OrderPlaced():
            return replace(shipment, placed=True, country=event.country)
        case PaymentCaptured():
            return replace(shipment, payment="captured")
        case PaymentDeclined():
            return replace(shipment, payment="declined", payment_reason=event.reason)
        case StockReserved():
            return replace(shipment, stock="reserved")
        case StockShortage():
            return replace(shipment, stock="shortage")
    return shipment


def decide(shipment: Shipment, event: OrderEvent, require_stock: bool = True) -> tuple[Shipment, list[OrderEvent]]:
    state = record(shipment, event)
    out: list[OrderEvent] = []
    if state.final:
        return state, out
    oid, sid = state.order_id, state.shipment_id
    if state.status == "new" and state.placed:
        out.append(ShipmentScheduled.create(order_id=oid, shipment_id=sid, country=state.country))
        state = replace(state, status="scheduled")
    if state.payment == "declined" or state.stock == "shortage":
        reason = f"payment declined: {state.payment_reason}" if state.payment == "declined" else "stock shortage"
        out.append(ShipmentCancelled.create(order_id=oid, shipment_id=sid, reason=reason))
        return replace(state, status="cancelled"), out
    stock_ok = state.stock == "reserved" or not require_stock
    if state.status == "scheduled" and state.payment == "captured" and stock_ok:
        out.append(ShipmentDispatched.create(order_id=oid, shipment_id=sid))
        state = replace(state, status="dispatched")
    return state, out
