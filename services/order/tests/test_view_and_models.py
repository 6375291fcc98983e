"""Unit tests of the order timeline projection helpers and the request model (no broker, no HTTP)."""

from __future__ import annotations

import copy
import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from pydantic import ValidationError

from eventkit.events import (
    LineItem,
    OrderPlaced,
    PaymentCaptured,
    ShipmentCancelled,
    ShipmentDispatched,
    StockLine,
    StockReserved,
    UnknownEvent,
)
from order_service.models import MAX_LINES, MAX_QUANTITY, OrderLine, OrderRequest, OrderView
from order_service.view import FINAL_STATES, status_of, to_entry

ORDER = "1f2e3d4c-5b6a-4789-8abc-def012345678"
AT = datetime(2010, 12, 1, 8, 26, 0, 123000, tzinfo=UTC)
AVRO_DIR = Path(__file__).resolve().parents[3] / "schemas" / "avro"


# -- status_of ------------------------------------------------------------------------------------------


def test_final_states():
    assert FINAL_STATES == {"ShipmentDispatched": "dispatched", "ShipmentCancelled": "cancelled"}


@pytest.mark.parametrize(
    ("types", "status"),
    [
        ([], "pending"),
        (["OrderPlaced"], "pending"),
        (["OrderPlaced", "PaymentCaptured", "StockReserved", "ShipmentScheduled"], "pending"),
        (["OrderPlaced", "ShipmentScheduled", "ShipmentDispatched"], "dispatched"),
        (["OrderPlaced", "PaymentDeclined", "ShipmentCancelled", "PaymentRefunded"], "cancelled"),
        (["ShipmentCancelled"], "cancelled"),
        (["ShipmentDispatched", "ShipmentCancelled"], "dispatched"),  # the first final event decides
        (["ShipmentCancelled", "ShipmentDispatched"], "cancelled"),
        (["OrderPlaced", "LoyaltyPointsAwarded", "GiftWrapped"], "pending"),  # unknown types are ignored
    ],
)
def test_status_of(types, status):
    assert status_of(types) == status


def test_status_of_accepts_any_iterable_once():
    assert status_of(t for t in ["OrderPlaced", "ShipmentDispatched"]) == "dispatched"


# -- to_entry -------------------------------------------------------------------------------------------


def placed() -> OrderPlaced:
    return OrderPlaced(
        event_id="e-1",
        occurred_at=AT,
        order_id=ORDER,
        customer_id="17850",
        currency="GBP",
        country=None,
        placed_at=datetime(2010, 12, 1, 8, 25, 59, 999999, tzinfo=UTC),
        items=(
            LineItem(sku="85123A", quantity=6, unit_price=Decimal("2.550"), description="WHITE T-LIGHT"),
            LineItem(sku="TINY", quantity=1_000, unit_price=Decimal("0.001")),
            LineItem(sku="BIG", quantity=1, unit_price=Decimal("38970.000")),
        ),
    )


def test_to_entry_of_a_known_event():
    entry = to_entry(placed())
    assert entry == {
        "type": "OrderPlaced",
        "event_id": "e-1",
        "occurred_at": "2010-12-01T08:26:00.123+00:00",
        "customer_id": "17850",
        "currency": "GBP",
        "country": None,
        "placed_at": "2010-12-01T08:25:59.999+00:00",  # milliseconds, truncated not rounded
        "items": [
            {"sku": "85123A", "quantity": 6, "unit_price": "2.550", "description": "WHITE T-LIGHT"},
            {"sku": "TINY", "quantity": 1000, "unit_price": "0.001", "description": None},
            {"sku": "BIG", "quantity": 1, "unit_price": "38970.000", "description": None},
        ],
    }
    assert list(entry)[:3] == ["type", "event_id", "occurred_at"]
    assert "order_id" not in entry


def test_to_entry_is_json_ready_and_money_stays_exact():
    entry = to_entry(
        PaymentCaptured(
            event_id="e-2", occurred_at=AT, order_id=ORDER, customer_id="c", amount=Decimal("0.003"), currency="GBP"
        )
    )
    assert entry is not None
    assert json.loads(json.dumps(entry)) == entry
    assert entry["amount"] == "0.003"
    assert isinstance(entry["amount"], str)
    assert entry["type"] == "PaymentCaptured"


def test_to_entry_keeps_other_time_zones_as_iso_with_offset():
    tz = timezone(timedelta(hours=1))
    event = ShipmentDispatched(event_id="e", occurred_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz), order_id=ORDER,
                               shipment_id="s")  # fmt: skip
    entry = to_entry(event)
    assert entry is not None
    assert entry["occurred_at"] == "2024-01-02T03:04:05.000+01:00"


def test_to_entry_turns_tuples_of_records_into_lists():
    event = StockReserved(event_id="e", occurred_at=AT, order_id=ORDER, lines=(StockLine(sku="A", quantity=2),))
    assert to_entry(event) == {
        "type": "StockReserved",
        "event_id": "e",
        "occurred_at": "2010-12-01T08:26:00.123+00:00",
        "lines": [{"sku": "A", "quantity": 2}],
    }


def test_to_entry_does_not_change_the_event():
    event = ShipmentCancelled(event_id="e", occurred_at=AT, order_id=ORDER, shipment_id="s", reason="r")
    before = copy.deepcopy(event)
    to_entry(event)
    assert event == before


def unknown_fields() -> dict[str, Any]:
    return {
        "event_id": "u-1",
        "occurred_at": AT,
        "order_id": ORDER,
        "points": 12,
        "value": Decimal("1.500"),
        "tiers": [{"name": "gold", "since": datetime(2020, 1, 1, tzinfo=UTC)}],
        "note": None,
    }


def test_to_entry_of_an_unknown_event_uses_its_record_name():
    fields = unknown_fields()
    event = UnknownEvent(record_name="LoyaltyPointsAwarded", fields=fields)
    entry = to_entry(event)
    assert entry == {
        "type": "LoyaltyPointsAwarded",
        "event_id": "u-1",
        "occurred_at": "2010-12-01T08:26:00.123+00:00",
        "points": 12,
        "value": "1.500",
        "tiers": [{"name": "gold", "since": "2020-01-01T00:00:00.000+00:00"}],
        "note": None,
    }
    assert event.fields == unknown_fields()  # the event's own dict was not popped


@pytest.mark.parametrize("missing", ["order_id", "event_id"])
def test_to_entry_of_an_unknown_event_without_ids_is_none(missing):
    fields = unknown_fields()
    del fields[missing]
    assert to_entry(UnknownEvent(record_name="Something", fields=fields)) is None


@pytest.mark.parametrize("empty", ["order_id", "event_id"])
def test_to_entry_with_empty_ids_is_none(empty):
    fields = {**unknown_fields(), empty: ""}
    assert to_entry(UnknownEvent(record_name="Something", fields=fields)) is None


def test_entries_fit_the_response_model():
    entries = [to_entry(placed()), to_entry(UnknownEvent(record_name="X", fields=unknown_fields()))]
    view = OrderView.model_validate({"order_id": ORDER, "status": "pending", "timeline": entries})
    assert view.timeline[0].type == "OrderPlaced"
    assert view.timeline[1].model_dump()["points"] == 12


# -- OrderRequest ---------------------------------------------------------------------------------------


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "customer_id": "17850",
        "currency": "GBP",
        "country": "United Kingdom",
        "items": [{"sku": "85123A", "quantity": 6, "unit_price": "2.55", "description": "WHITE T-LIGHT"}],
    }
    base.update(changes)
    return base


def line(**changes: Any) -> dict[str, Any]:
    return {"sku": "85123A", "quantity": 6, "unit_price": "2.55", **changes}


def test_accepts_a_plain_order():
    order = OrderRequest.model_validate(body())
    assert order.customer_id == "17850"
    assert order.items[0].unit_price == Decimal("2.55")
    assert order.items[0].description == "WHITE T-LIGHT"


def test_accepts_a_1114_line_order():
    items = [line(sku=f"SKU{n}", quantity=n + 1) for n in range(1_114)]
    order = OrderRequest.model_validate_json(json.dumps(body(items=items)))
    assert len(order.items) == 1_114
    assert order.items[-1].quantity == 1_114
    assert MAX_LINES > 1_114


def test_refuses_more_than_max_lines():
    with pytest.raises(ValidationError):
        OrderRequest.model_validate(body(items=[line()] * (MAX_LINES + 1)))


def test_accepts_price_0_001():
    order = OrderRequest.model_validate(body(items=[line(unit_price="0.001")]))
    assert order.items[0].unit_price == Decimal("0.001")


def test_accepts_price_as_json_number_exactly():
    raw = '{"customer_id": "c", "currency": "GBP", "items": [{"sku": "A", "quantity": 3, "unit_price": 2.55}]}'
    price = OrderRequest.model_validate_json(raw).items[0].unit_price
    assert isinstance(price, Decimal)
    assert price == Decimal("2.55")
    assert str(price) == "2.550"  # every price is kept at scale 3, the Avro decimal's


def test_accepts_zero_price_and_max_quantity():
    order = OrderRequest.model_validate(body(items=[line(unit_price="0", quantity=MAX_QUANTITY)]))
    assert order.items[0].quantity == MAX_QUANTITY


def test_refuses_an_sku_whose_lines_add_up_past_the_quantity_bound():
    with pytest.raises(ValidationError, match="at most"):
        OrderRequest.model_validate(body(items=[line(sku="A", quantity=MAX_QUANTITY)] * 2))


def test_refuses_a_total_that_would_not_fit_the_avro_amount():
    # 1,000,000 x 999,999,999.999 per line, 2 lines: about 2e15, beyond decimal(18, 3).
    items = [line(sku=s, quantity=MAX_QUANTITY, unit_price="999999999.999") for s in ("A", "B")]
    with pytest.raises(ValidationError, match="order total"):
        OrderRequest.model_validate(body(items=items))


def test_country_and_description_may_be_omitted():
    raw = body(items=[line()])
    del raw["country"]
    order = OrderRequest.model_validate(raw)
    assert order.country is None
    assert order.items[0].description is None


def _refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OrderRequest.model_validate(raw)
    with pytest.raises(ValidationError):
        OrderRequest.model_validate_json(json.dumps(raw))


def _without(key: str) -> dict[str, Any]:
    raw = body()
    del raw[key]
    return raw


REFUSED = {
    "unknown top-level field": body(coupon="FREE"),
    "unknown line field": body(items=[line(discount="0.10")]),
    "empty items": body(items=[]),
    "quantity 0": body(items=[line(quantity=0)]),
    "negative quantity": body(items=[line(quantity=-1)]),
    "quantity as string": body(items=[line(quantity="3")]),
    "quantity as float": body(items=[line(quantity=3.0)]),
    "quantity as bool": body(items=[line(quantity=True)]),
    "quantity over int32": body(items=[line(quantity=2**31)]),
    "price with 4 decimal places": body(items=[line(unit_price="0.0001")]),
    "price with 4 significant places": body(items=[line(unit_price="2.5501")]),
    "negative price": body(items=[line(unit_price="-0.001")]),
    "price NaN": body(items=[line(unit_price="NaN")]),
    "price Infinity": body(items=[line(unit_price="Infinity")]),
    "price too many digits": body(items=[line(unit_price="9999999999999999.999")]),
    "currency USD": body(currency="USD"),
    "currency lower case": body(currency="gbp"),
    "missing customer_id": _without("customer_id"),
    "empty customer_id": body(customer_id=""),
    "missing currency": _without("currency"),
    "missing items": _without("items"),
    "sku too long": body(items=[line(sku="X" * 65)]),
    "empty sku": body(items=[line(sku="")]),
    "empty country": body(country=""),
}


@pytest.mark.parametrize("raw", list(REFUSED.values()), ids=list(REFUSED))
def test_refuses(raw):
    _refused(raw)


def test_sku_of_exactly_64_characters_is_accepted():
    assert OrderRequest.model_validate(body(items=[line(sku="X" * 64)])).items[0].sku == "X" * 64


def test_line_model_forbids_extra_fields_on_its_own():
    with pytest.raises(ValidationError):
        OrderLine.model_validate({**line(), "colour": "red"})


# -- accepted prices must be encodable as OrderPlaced (Avro decimal, scale 3) ----------------------------


def _encode_order_with_price(price: str) -> None:
    order = OrderRequest.model_validate(body(items=[line(unit_price=price)]))
    event = order.to_event(ORDER, AT)
    schema = parse_schema(json.loads((AVRO_DIR / "OrderPlaced.avsc").read_text()))
    schemaless_writer(io.BytesIO(), schema, event.to_record())


@pytest.mark.parametrize("price", ["0.001", "2.55", "38970", "38970.0", "999999999.999", "1E+3"])
def test_accepted_prices_encode_as_avro(price):
    _encode_order_with_price(price)


def test_price_with_trailing_zeros_beyond_3_places_is_encodable():
    _encode_order_with_price("2.5500")


# -- unknown events with other Avro logical types ------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [date(2024, 1, 2), time(1, 2, 3), uuid.UUID("2fe965cf-58b9-4f9d-ad7c-0deb9fce0921"), b"\x00\x01"],
    ids=["date", "time-millis", "uuid", "bytes"],
)
def test_unknown_event_with_other_logical_types_is_json_ready(value):
    entry = to_entry(UnknownEvent(record_name="DeliveryBooked", fields={**unknown_fields(), "extra": value}))
    json.dumps(entry)
