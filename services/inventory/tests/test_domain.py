"""Unit tests of the inventory decider: all-or-nothing reservation, release, idempotency (no broker)."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from eventkit.events import (
    Event,
    LineItem,
    OrderPlaced,
    ShipmentCancelled,
    Shortfall,
    StockLine,
    StockReleased,
    StockReserved,
    StockShortage,
    event_id_for,
)
from inventory_service.domain import CONSUMES, Reservation, decide, requested

ORDER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
PLACED_AT = datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
AVRO_DIR = Path(__file__).resolve().parents[3] / "schemas" / "avro"


def order(lines: Iterable[tuple[str, int]], order_id: str = ORDER) -> OrderPlaced:
    return OrderPlaced.create(
        order_id=order_id,
        customer_id="17850",
        currency="GBP",
        placed_at=PLACED_AT,
        items=tuple(LineItem(sku=s, quantity=q, unit_price=Decimal("2.55")) for s, q in lines),
    )


def cancelled(reason: str = "payment declined: no", order_id: str = ORDER) -> ShipmentCancelled:
    return ShipmentCancelled.create(order_id=order_id, shipment_id="ship-1", reason=reason)


class World:
    """Applies decisions and their deltas to a stock dict, as the service does with its table."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.initial = dict(stock)
        self.stock = dict(stock)
        self.reservations: dict[str, Reservation] = {}
        self.emitted: list[Event] = []

    def apply(self, event: OrderPlaced | ShipmentCancelled) -> list[Event]:
        oid = event.order_id
        view = {sku: self.stock.get(sku, 0) for sku in _skus(event)}
        reservation, out, deltas = decide(self.reservations.get(oid, Reservation(order_id=oid)), event, view)
        self.reservations[oid] = reservation
        for sku, delta in deltas.items():
            self.stock[sku] = self.stock.get(sku, 0) + delta
        self.emitted.extend(out)
        return out


def _skus(event: Event) -> set[str]:
    return {i.sku for i in event.items} if isinstance(event, OrderPlaced) else set()


def net(events: Iterable[Event]) -> Counter[str]:
    """Units taken out of stock by reservations minus units put back by releases."""
    taken: Counter[str] = Counter()
    for event in events:
        if isinstance(event, StockReserved):
            for line in event.lines:
                taken[line.sku] += line.quantity
        elif isinstance(event, StockReleased):
            for line in event.lines:
                taken[line.sku] -= line.quantity
    return taken


def test_consumes_orders_and_cancellations():
    assert set(CONSUMES) == {OrderPlaced, ShipmentCancelled}


# -- reservation ----------------------------------------------------------------------------------------


def test_reserves_every_line_when_all_are_in_stock():
    reservation, out, deltas = decide(Reservation(order_id=ORDER), order([("B", 2), ("A", 5)]), {"A": 5, "B": 10})
    assert [type(e) for e in out] == [StockReserved]
    assert isinstance(out[0], StockReserved)
    assert out[0].lines == (StockLine(sku="A", quantity=5), StockLine(sku="B", quantity=2))
    assert deltas == {"A": -5, "B": -2}
    assert reservation.status == "reserved"
    assert reservation.lines == (("A", 5), ("B", 2))


def test_same_sku_on_two_lines_is_summed():
    assert requested(order([("A", 2), ("B", 1), ("A", 3)])) == {"A": 5, "B": 1}
    _, out, deltas = decide(Reservation(order_id=ORDER), order([("A", 2), ("B", 1), ("A", 3)]), {"A": 5, "B": 1})
    assert isinstance(out[0], StockReserved)
    assert out[0].lines == (StockLine(sku="A", quantity=5), StockLine(sku="B", quantity=1))
    assert deltas == {"A": -5, "B": -1}


def test_same_sku_on_two_lines_is_summed_for_the_shortage_check():
    # each line alone (3, 3) fits in 5, the sum (6) does not
    reservation, out, deltas = decide(Reservation(order_id=ORDER), order([("A", 3), ("A", 3)]), {"A": 5})
    assert [type(e) for e in out] == [StockShortage]
    assert out[0].missing == (Shortfall(sku="A", requested=6, available=5),)  # type: ignore[attr-defined]
    assert deltas == {}
    assert reservation.status == "shortage"


def test_all_or_nothing_one_short_line_reserves_nothing():
    reservation, out, deltas = decide(
        Reservation(order_id=ORDER), order([("A", 1), ("B", 4), ("C", 2)]), {"A": 100, "B": 3, "C": 100}
    )
    assert [type(e) for e in out] == [StockShortage]
    assert deltas == {}
    assert reservation.status == "shortage"
    assert reservation.lines == ()


def test_shortage_lists_every_short_sku_with_requested_and_available():
    _, out, _ = decide(
        Reservation(order_id=ORDER),
        order([("C", 7), ("A", 2), ("B", 1), ("C", 1), ("D", 4)]),
        {"A": 1, "B": 1, "C": 0, "D": 3},
    )
    assert isinstance(out[0], StockShortage)
    assert out[0].missing == (
        Shortfall(sku="A", requested=2, available=1),
        Shortfall(sku="C", requested=8, available=0),
        Shortfall(sku="D", requested=4, available=3),
    )


def test_exactly_the_available_quantity_is_reserved():
    _, out, deltas = decide(Reservation(order_id=ORDER), order([("A", 5)]), {"A": 5})
    assert isinstance(out[0], StockReserved)
    assert deltas == {"A": -5}


# -- release --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cancel_first", [False, True], ids=["order-then-cancel", "cancel-then-order"])
def test_release_after_cancellation_in_both_arrival_orders(cancel_first):
    world = World({"A": 10, "B": 10})
    events = [order([("A", 3), ("B", 1), ("A", 2)]), cancelled("stock shortage")]
    if cancel_first:
        events.reverse()
    for event in events:
        world.apply(event)
    assert [type(e) for e in world.emitted] == [StockReserved, StockReleased]
    released = world.emitted[1]
    assert isinstance(released, StockReleased)
    assert released.lines == (StockLine(sku="A", quantity=5), StockLine(sku="B", quantity=1))
    assert released.reason == "shipment cancelled: stock shortage"
    assert world.stock == world.initial
    assert world.reservations[ORDER].status == "released"


def test_cancel_first_deltas_of_one_decision_sum_to_zero():
    reservation, _, _ = decide(Reservation(order_id=ORDER), cancelled(), {})
    reservation, out, deltas = decide(reservation, order([("A", 3), ("B", 2)]), {"A": 3, "B": 2})
    assert [type(e) for e in out] == [StockReserved, StockReleased]
    assert deltas == {"A": 0, "B": 0}
    assert reservation.status == "released"


def test_order_then_cancel_deltas_sum_to_zero():
    reservation, _, reserve = decide(Reservation(order_id=ORDER), order([("A", 3), ("B", 2)]), {"A": 9, "B": 9})
    reservation, out, release = decide(reservation, cancelled(), {})
    assert [type(e) for e in out] == [StockReleased]
    assert {sku: reserve.get(sku, 0) + release.get(sku, 0) for sku in reserve | release} == {"A": 0, "B": 0}


@pytest.mark.parametrize("cancel_first", [False, True], ids=["order-then-cancel", "cancel-then-order"])
def test_no_release_for_a_shortage(cancel_first):
    world = World({"A": 1})
    events = [order([("A", 2)]), cancelled()]
    if cancel_first:
        events.reverse()
    for event in events:
        world.apply(event)
    assert [type(e) for e in world.emitted] == [StockShortage]
    assert world.stock == {"A": 1}
    assert world.reservations[ORDER].status == "shortage"


def test_cancellation_alone_emits_nothing():
    reservation, out, deltas = decide(Reservation(order_id=ORDER), cancelled("x"), {})
    assert (out, deltas) == ([], {})
    assert reservation.cancelled == "x"
    assert reservation.status == "new"


# -- idempotency ----------------------------------------------------------------------------------------


def test_redelivered_order_reserves_once():
    world = World({"A": 10})
    for _ in range(3):
        world.apply(order([("A", 4)]))
    assert [type(e) for e in world.emitted] == [StockReserved]
    assert world.stock == {"A": 6}


def test_redelivered_shortage_order_reports_once():
    world = World({"A": 1})
    for _ in range(3):
        world.apply(order([("A", 4)]))
    assert [type(e) for e in world.emitted] == [StockShortage]


@pytest.mark.parametrize("cancel_first", [False, True], ids=["order-then-cancel", "cancel-then-order"])
def test_redelivery_after_release_changes_nothing(cancel_first):
    world = World({"A": 10})
    events: list[OrderPlaced | ShipmentCancelled] = [order([("A", 4)]), cancelled()]
    if cancel_first:
        events.reverse()
    for event in events + events + list(reversed(events)) + [cancelled("another reason")]:
        world.apply(event)
    assert [type(e) for e in world.emitted] == [StockReserved, StockReleased]
    assert world.stock == {"A": 10}
    assert world.emitted[1].reason == "shipment cancelled: payment declined: no"  # type: ignore[attr-defined]


def test_decided_events_have_derived_ids():
    world = World({"A": 10})
    world.apply(order([("A", 4)]))
    world.apply(cancelled())
    short = World({"A": 0})
    short.apply(order([("A", 4)]))
    for event in world.emitted + short.emitted:
        assert event.order_id == ORDER
        assert event.event_id == event_id_for(ORDER, event.RECORD)


# -- property: stock = initial - reserved + released, never negative -------------------------------------


@pytest.mark.parametrize("seed", range(300))
def test_random_sequences_keep_stock_consistent(seed):
    rng = random.Random(seed)
    skus = [f"SKU{i}" for i in range(rng.randint(1, 5))]
    world = World({sku: rng.randint(0, 20) for sku in skus})
    orders = [f"order-{seed}-{n}" for n in range(rng.randint(1, 8))]
    placed = {
        oid: order([(rng.choice(skus), rng.randint(1, 8)) for _ in range(rng.randint(1, 4))], order_id=oid)
        for oid in orders
    }
    pending: list[OrderPlaced | ShipmentCancelled] = list(placed.values())
    pending += [cancelled(order_id=oid) for oid in orders if rng.random() < 0.5]
    rng.shuffle(pending)
    # redeliveries: some events come again, anywhere later
    for _ in range(rng.randint(0, len(pending))):
        event = rng.choice(pending)
        pending.insert(rng.randint(pending.index(event), len(pending)), event)

    for event in pending:
        world.apply(event)
        assert all(v >= 0 for v in world.stock.values()), world.stock
        taken = net(world.emitted)
        assert world.stock == {sku: world.initial[sku] - taken[sku] for sku in skus}

    # each order decided exactly once, released at most once, and only if it was reserved and cancelled
    kinds = Counter((e.order_id, e.RECORD) for e in world.emitted)
    cancelled_orders = {e.order_id for e in pending if isinstance(e, ShipmentCancelled)}
    for oid in orders:
        assert kinds[(oid, "StockReserved")] + kinds[(oid, "StockShortage")] == 1
        expected_release = int(kinds[(oid, "StockReserved")] == 1 and oid in cancelled_orders)
        assert kinds[(oid, "StockReleased")] == expected_release
    # everything reserved for a cancelled order came back
    assert all(
        world.stock[sku]
        == world.initial[sku] - net(e for e in world.emitted if e.order_id not in cancelled_orders)[sku]
        for sku in skus
    )


# -- bugs -----------------------------------------------------------------------------------------------


def test_ordinary_decided_events_validate_against_their_avro_schema():
    world = World({"A": 10, "B": 0})
    world.apply(order([("A", 4)]))
    world.apply(cancelled())
    world.apply(order([("B", 1)], order_id="other"))
    assert {e.RECORD for e in world.emitted} == {"StockReserved", "StockReleased", "StockShortage"}
    for event in world.emitted:
        schema = parse_schema(json.loads((AVRO_DIR / f"{event.RECORD}.avsc").read_text()))
        validate(event.to_record(), schema, raise_errors=True)
