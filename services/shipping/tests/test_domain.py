"""Unit tests of the shipping decider: every docstring rule, every arrival order, redelivery (no broker)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from eventkit.events import (
    Event,
    LineItem,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    ShipmentCancelled,
    ShipmentDispatched,
    ShipmentScheduled,
    Shortfall,
    StockLine,
    StockReserved,
    StockShortage,
    event_id_for,
)
from shipping_service.domain import CONSUMES, Shipment, decide, record

ORDER = "0b7c2d2e-4a4b-4f7e-9d55-1f0e2a3b4c5d"
PLACED_AT = datetime(2010, 12, 1, 8, 26, tzinfo=UTC)


def placed(country: str | None = "United Kingdom") -> OrderPlaced:
    return OrderPlaced.create(
        order_id=ORDER,
        customer_id="17850",
        currency="GBP",
        country=country,
        placed_at=PLACED_AT,
        items=(LineItem(sku="85123A", quantity=6, unit_price=Decimal("2.55")),),
    )


def captured() -> PaymentCaptured:
    return PaymentCaptured.create(order_id=ORDER, customer_id="17850", amount=Decimal("15.300"), currency="GBP")


def declined(reason: str = "over the credit limit") -> PaymentDeclined:
    return PaymentDeclined.create(
        order_id=ORDER, customer_id="17850", amount=Decimal("15.300"), currency="GBP", reason=reason
    )


def reserved() -> StockReserved:
    return StockReserved.create(order_id=ORDER, lines=(StockLine(sku="85123A", quantity=6),))


def shortage() -> StockShortage:
    return StockShortage.create(order_id=ORDER, missing=(Shortfall(sku="85123A", requested=6, available=2),))


def run(
    events: Iterable[Event], require_stock: bool = True, state: Shipment | None = None
) -> tuple[Shipment, list[Event]]:
    state = state or Shipment(order_id=ORDER)
    emitted: list[Event] = []
    for event in events:
        state, out = decide(state, event, require_stock=require_stock)
        emitted.extend(out)
    return state, emitted


def types(events: Iterable[Event]) -> Counter[str]:
    return Counter(e.RECORD for e in events)


# -- the rules one by one -------------------------------------------------------------------------------


def test_consumes_exactly_the_facts_it_decides_on():
    assert set(CONSUMES) == {OrderPlaced, PaymentCaptured, PaymentDeclined, StockReserved, StockShortage}


def test_rule_1_a_placed_order_is_scheduled_once_with_its_country():
    state, out = decide(Shipment(order_id=ORDER), placed("France"))
    assert [type(e) for e in out] == [ShipmentScheduled]
    scheduled = out[0]
    assert isinstance(scheduled, ShipmentScheduled)
    assert scheduled.order_id == ORDER
    assert scheduled.country == "France"
    assert scheduled.shipment_id == state.shipment_id
    assert state.status == "scheduled"
    assert not state.final


def test_rule_1_a_placed_order_without_country_is_scheduled_with_none():
    _, out = decide(Shipment(order_id=ORDER), placed(country=None))
    assert isinstance(out[0], ShipmentScheduled)
    assert out[0].country is None


@pytest.mark.parametrize("make", [captured, reserved], ids=["payment", "stock"])
def test_rule_1_nothing_happens_before_the_order_is_placed(make):
    state, out = decide(Shipment(order_id=ORDER), make())
    assert out == []
    assert state.status == "new"


def test_rule_1_the_order_is_not_scheduled_twice():
    state, _ = decide(Shipment(order_id=ORDER), placed())
    state, out = decide(state, placed())
    assert out == []
    assert state.status == "scheduled"


def test_rule_2_declined_payment_cancels_with_the_payment_reason():
    state, out = run([placed(), declined("order total too high")])
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentCancelled": 1})
    cancelled = out[-1]
    assert isinstance(cancelled, ShipmentCancelled)
    assert cancelled.reason == "payment declined: order total too high"
    assert cancelled.shipment_id == state.shipment_id
    assert state.status == "cancelled"
    assert state.final


def test_rule_2_stock_shortage_cancels_with_stock_reason():
    state, out = run([placed(), shortage()])
    cancelled = out[-1]
    assert isinstance(cancelled, ShipmentCancelled)
    assert cancelled.reason == "stock shortage"
    assert state.status == "cancelled"


def test_rule_2_cancels_even_after_payment_was_captured():
    state, out = run([placed(), captured(), shortage()])
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentCancelled": 1})
    assert state.status == "cancelled"


def test_rule_2_a_decline_before_the_order_cancels_without_scheduling():
    # The shipment is decided (final) before the order arrives, so rule 1 no longer applies.
    state, out = run([declined()])
    assert types(out) == Counter({"ShipmentCancelled": 1})
    assert state.final
    state, out = run([placed()], state=state)
    assert out == []


def test_rule_3_dispatch_needs_payment_and_stock():
    state, out = run([placed(), captured()])
    assert types(out) == Counter({"ShipmentScheduled": 1})
    assert state.status == "scheduled"
    state, out = run([reserved()], state=state)
    assert [type(e) for e in out] == [ShipmentDispatched]
    assert isinstance(out[0], ShipmentDispatched)
    assert out[0].shipment_id == state.shipment_id
    assert state.status == "dispatched"
    assert state.final


def test_rule_3_stock_alone_does_not_dispatch():
    state, out = run([placed(), reserved()])
    assert types(out) == Counter({"ShipmentScheduled": 1})
    assert state.status == "scheduled"


def test_require_stock_false_dispatches_on_payment_alone():
    state, out = run([placed(), captured()], require_stock=False)
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentDispatched": 1})
    assert state.status == "dispatched"


def test_require_stock_false_payment_before_order_dispatches_when_order_arrives():
    state, out = run([captured(), placed()], require_stock=False)
    assert [e.RECORD for e in out] == ["ShipmentScheduled", "ShipmentDispatched"]
    assert state.status == "dispatched"


def test_require_stock_false_still_cancels_on_decline():
    state, out = run([placed(), declined()], require_stock=False)
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentCancelled": 1})
    assert state.status == "cancelled"


def test_require_stock_false_placed_alone_only_schedules():
    state, out = run([placed()], require_stock=False)
    assert types(out) == Counter({"ShipmentScheduled": 1})
    assert state.status == "scheduled"


def test_shipment_id_is_stable_per_order_and_distinct_across_orders():
    assert Shipment(order_id=ORDER).shipment_id == Shipment(order_id=ORDER, status="dispatched").shipment_id
    assert Shipment(order_id=ORDER).shipment_id != Shipment(order_id="another").shipment_id


def test_decided_events_have_derived_ids():
    _, out = run([placed(), captured(), reserved()])
    _, cancelled = run([placed(), declined()])
    for event in out + cancelled:
        assert event.event_id == event_id_for(ORDER, event.RECORD)
        assert event.order_id == ORDER


def test_record_keeps_facts_without_deciding():
    state = record(Shipment(order_id=ORDER), declined("no"))
    assert (state.payment, state.payment_reason, state.status) == ("declined", "no", "new")
    state = record(state, shortage())
    assert state.stock == "shortage"


# -- arrival orders ---------------------------------------------------------------------------------------

HAPPY = (placed, captured, reserved)
UNHAPPY = [
    (placed, declined, reserved),
    (placed, captured, shortage),
    (placed, declined, shortage),
    (placed, captured, reserved, declined),
    (placed, captured, reserved, shortage),
]


def _name(makers) -> str:
    return "-".join(m.__name__ for m in makers)


@pytest.mark.parametrize("order", list(itertools.permutations(HAPPY)), ids=_name)
def test_every_arrival_order_of_the_happy_path_dispatches_once(order):
    state, out = run(m() for m in order)
    assert state.status == "dispatched"
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentDispatched": 1})
    # scheduled always comes before dispatched
    assert [e.RECORD for e in out] == ["ShipmentScheduled", "ShipmentDispatched"]


def _unhappy_permutations():
    for makers in UNHAPPY:
        for perm in itertools.permutations(makers):
            # A dispatch decided before the bad news arrives is legitimately final; those orders
            # (captured + reserved + placed all before the bad fact) are the happy path, covered above.
            bad = next(i for i, m in enumerate(perm) if m in (declined, shortage))
            if {placed, captured, reserved} <= set(perm[:bad]):
                continue
            yield perm


@pytest.mark.parametrize("order", list(_unhappy_permutations()), ids=_name)
def test_every_arrival_order_with_bad_news_cancels_once_and_never_dispatches(order):
    state, out = run(m() for m in order)
    counts = types(out)
    assert state.status == "cancelled"
    assert counts["ShipmentCancelled"] == 1
    assert counts["ShipmentDispatched"] == 0
    assert counts["ShipmentScheduled"] <= 1
    assert set(counts) <= {"ShipmentScheduled", "ShipmentCancelled"}


@pytest.mark.parametrize("order", list(itertools.permutations(HAPPY)), ids=_name)
def test_require_stock_false_every_arrival_order_dispatches_once(order):
    state, out = run((m() for m in order), require_stock=False)
    assert state.status == "dispatched"
    assert types(out) == Counter({"ShipmentScheduled": 1, "ShipmentDispatched": 1})


# -- redelivery after a final state -----------------------------------------------------------------------

ALL = (placed, captured, declined, reserved, shortage)


@pytest.mark.parametrize("final_path", [HAPPY, (placed, declined), (placed, shortage)], ids=_name)
@pytest.mark.parametrize("require_stock", [True, False])
def test_redelivery_of_any_event_after_a_final_state_emits_nothing(final_path, require_stock):
    state, _ = run((m() for m in final_path), require_stock=require_stock)
    assert state.final
    final_status = state.status
    for make in ALL:
        # each event once more, and a literal redelivery of each original event too
        state, out = decide(state, make(), require_stock=require_stock)
        assert out == []
        assert state.status == final_status


def test_redelivering_the_same_event_object_before_final_changes_nothing():
    event = placed()
    state, first = run([event])
    state, again = run([event, event], state=state)
    assert types(first) == Counter({"ShipmentScheduled": 1})
    assert again == []
