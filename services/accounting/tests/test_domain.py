"""Unit tests of the accounting decider: capture/decline at the credit limit, refunds, ids (no broker)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer

from accounting_service.domain import CONSUMES, SETTLED_CURRENCIES, Payment, decide, decline_reason
from eventkit.events import (
    Event,
    LineItem,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentCancelled,
    event_id_for,
)

ORDER = "5d0c9a3e-1b2f-4c6d-8e7f-0a1b2c3d4e5f"
LIMIT = Decimal("5000.000")
PLACED_AT = datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
AVRO_DIR = Path(__file__).resolve().parents[3] / "schemas" / "avro"


def order(lines: Iterable[tuple[str, int, str]], currency: str = "GBP", order_id: str = ORDER) -> OrderPlaced:
    return OrderPlaced.create(
        order_id=order_id,
        customer_id="17850",
        currency=currency,
        placed_at=PLACED_AT,
        items=tuple(LineItem(sku=s, quantity=q, unit_price=Decimal(p)) for s, q, p in lines),
    )


def cancelled(reason: str = "stock shortage", order_id: str = ORDER) -> ShipmentCancelled:
    return ShipmentCancelled.create(order_id=order_id, shipment_id="ship-1", reason=reason)


def run(events: Iterable[Event], limit: Decimal = LIMIT, payment: Payment | None = None) -> tuple[Payment, list[Event]]:
    payment = payment or Payment(order_id=ORDER)
    emitted: list[Event] = []
    for event in events:
        payment, out = decide(payment, event, limit)
        emitted.extend(out)
    return payment, emitted


def expected_total(lines: Iterable[tuple[str, int, str]]) -> Decimal:
    """Computed independently of OrderPlaced.total: exact Decimal arithmetic, no float, no rounding."""
    total = Decimal("0.000")
    for _, quantity, price in lines:
        total += Decimal(price) * Decimal(quantity)
    return total


def test_consumes_orders_and_cancellations():
    assert set(CONSUMES) == {OrderPlaced, ShipmentCancelled}
    assert {"GBP"} == SETTLED_CURRENCIES


# -- capture / decline at the credit limit --------------------------------------------------------------

# 1_000 x 0.001 + 1_960 x 2.55 = 1.000 + 4998.000 = 4999.000; a further line tops up to the boundary.
BASE = [("TINY", 1_000, "0.001"), ("85123A", 1_960, "2.55")]


@pytest.mark.parametrize(
    ("extra", "outcome"),
    [
        ([("TINY", 999_999, "0.001")], "declined"),  # 4999.000 + 999.999 = 5998.999
        ([("TINY", 999, "0.001")], "captured"),  # 4999.999: just under
        ([("TINY", 1_000, "0.001")], "captured"),  # 5000.000: exactly the limit
        ([("TINY", 1_001, "0.001")], "declined"),  # 5000.001: one tenth of a penny over
        ([("85123A", 1, "2.55")], "declined"),  # 5001.550
    ],
    ids=["far-over", "under-by-0.001", "at-limit", "over-by-0.001", "over-by-2.55"],
)
def test_capture_or_decline_around_the_credit_limit(extra, outcome):
    lines = BASE + extra
    total = expected_total(lines)
    expected = "captured" if total <= LIMIT else "declined"
    assert outcome == expected, f"test table wrong for total {total}"

    payment, out = run([order(lines)])
    assert len(out) == 1
    event = out[0]
    assert event.amount == total  # type: ignore[attr-defined]
    assert event.amount.as_tuple().exponent == -3  # type: ignore[attr-defined]
    assert str(event.amount) == str(total)  # type: ignore[attr-defined]
    assert payment.amount == total
    assert payment.status == outcome
    if outcome == "captured":
        assert isinstance(event, PaymentCaptured)
    else:
        assert isinstance(event, PaymentDeclined)
        assert event.reason == (f"order total {total} GBP exceeds the credit limit of {LIMIT} GBP")
    assert event.customer_id == "17850"  # type: ignore[attr-defined]
    assert event.currency == "GBP"  # type: ignore[attr-defined]


def test_exact_totals_with_sub_penny_prices():
    lines = [("A", 3, "0.001"), ("B", 7, "2.55"), ("C", 1_114, "0.001"), ("D", 12, "0.85")]
    # 0.003 + 17.850 + 1.114 + 10.200 = 29.167, written out by hand as well
    assert expected_total(lines) == Decimal("29.167")
    _, out = run([order(lines)])
    assert isinstance(out[0], PaymentCaptured)
    assert out[0].amount == Decimal("29.167")
    assert str(out[0].amount) == "29.167"


def test_total_is_exact_where_float_arithmetic_is_not():
    lines = [("A", 1, "0.1"), ("B", 1, "0.2"), ("C", 3, "2.55")]
    assert 0.1 + 0.2 + 3 * 2.55 != 7.95  # the float trap this guards against
    _, out = run([order(lines)])
    assert out[0].amount == Decimal("7.950")  # type: ignore[attr-defined]
    assert str(out[0].amount) == "7.950"  # type: ignore[attr-defined]


def test_a_different_credit_limit_is_honoured():
    lines = [("B", 4, "2.55")]  # 10.200
    assert isinstance(run([order(lines)], limit=Decimal("10.200"))[1][0], PaymentCaptured)
    assert isinstance(run([order(lines)], limit=Decimal("10.199"))[1][0], PaymentDeclined)


def test_zero_total_is_captured():
    payment, out = run([order([("FREE", 5, "0")])])
    assert isinstance(out[0], PaymentCaptured)
    assert out[0].amount == Decimal("0.000")
    assert payment.status == "captured"


@pytest.mark.parametrize("currency", ["USD", "EUR", "gbp", ""])
def test_non_gbp_order_is_declined_whatever_its_total(currency):
    payment, out = run([order([("A", 1, "0.001")], currency=currency)])
    assert len(out) == 1
    assert isinstance(out[0], PaymentDeclined)
    assert out[0].currency == currency
    assert out[0].amount == Decimal("0.001")
    assert out[0].reason == f"currency {currency} is not settled here"
    assert payment.status == "declined"


def test_decline_reason_checks_currency_before_the_limit():
    assert decline_reason(Decimal("99999"), "USD", LIMIT) == "currency USD is not settled here"
    assert decline_reason(LIMIT, "GBP", LIMIT) is None
    assert decline_reason(LIMIT + Decimal("0.001"), "GBP", LIMIT) is not None


def test_redelivered_order_is_decided_once():
    payment, out = run([order([("B", 1, "2.55")])] * 3)
    assert [type(e) for e in out] == [PaymentCaptured]
    assert payment.status == "captured"


def test_a_second_different_order_event_for_the_same_order_does_not_re_decide():
    first = order([("B", 1, "2.55")])
    second = order([("B", 10_000, "2.55")])
    payment, out = run([first, second])
    assert [type(e) for e in out] == [PaymentCaptured]
    assert payment.amount == Decimal("2.550")


# -- refunds --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cancel_first", [False, True], ids=["order-then-cancel", "cancel-then-order"])
def test_refund_after_cancellation_in_both_arrival_orders(cancel_first):
    lines = [("A", 3, "0.001"), ("B", 2, "2.55")]
    total = expected_total(lines)
    events = [order(lines), cancelled("stock shortage")]
    if cancel_first:
        events.reverse()
    payment, out = run(events)
    assert [type(e) for e in out] == [PaymentCaptured, PaymentRefunded]
    captured, refunded = out
    assert isinstance(captured, PaymentCaptured) and isinstance(refunded, PaymentRefunded)
    assert refunded.amount == captured.amount == total == Decimal("5.103")
    assert refunded.currency == "GBP"
    assert refunded.customer_id == "17850"
    assert refunded.reason == "shipment cancelled: stock shortage"
    assert payment.status == "refunded"


def test_cancellation_alone_emits_nothing():
    payment, out = run([cancelled()])
    assert out == []
    assert payment.status == "new"
    assert payment.cancelled == "stock shortage"


@pytest.mark.parametrize("cancel_first", [False, True], ids=["order-then-cancel", "cancel-then-order"])
def test_no_refund_for_a_declined_order(cancel_first):
    events = [order([("B", 10_000, "2.55")]), cancelled("payment declined: too much")]
    if cancel_first:
        events.reverse()
    payment, out = run(events)
    assert [type(e) for e in out] == [PaymentDeclined]
    assert payment.status == "declined"


def test_no_double_refund_on_redelivered_cancellation():
    payment, out = run([order([("B", 1, "2.55")]), cancelled(), cancelled(), cancelled("other reason")])
    assert [type(e) for e in out] == [PaymentCaptured, PaymentRefunded]
    assert out[1].reason == "shipment cancelled: stock shortage"  # type: ignore[attr-defined]
    payment, more = run([cancelled(), order([("B", 1, "2.55")])], payment=payment)
    assert more == []
    assert payment.status == "refunded"


def test_no_double_refund_when_cancelled_first_and_everything_is_redelivered():
    events = [cancelled(), order([("B", 1, "2.55")])]
    payment, out = run(events + events + list(reversed(events)))
    assert [type(e) for e in out] == [PaymentCaptured, PaymentRefunded]
    assert payment.status == "refunded"


# -- ids ------------------------------------------------------------------------------------------------


def test_decided_events_have_derived_ids():
    _, out = run([order([("B", 1, "2.55")]), cancelled()])
    _, declined = run([order([("A", 1, "1")], currency="USD")])
    for event in out + declined:
        assert event.order_id == ORDER
        assert event.event_id == event_id_for(ORDER, event.RECORD)
    assert {e.RECORD for e in out + declined} == {"PaymentCaptured", "PaymentRefunded", "PaymentDeclined"}


def test_re_deciding_from_scratch_gives_the_same_ids():
    events = [order([("B", 1, "2.55")]), cancelled()]
    assert [e.event_id for e in run(events)[1]] == [e.event_id for e in run(events)[1]]


def test_ids_differ_between_orders():
    other = "ffffffff-1b2f-4c6d-8e7f-0a1b2c3d4e5f"
    _, a = run([order([("B", 1, "2.55")])])
    _, b = run([order([("B", 1, "2.55")], order_id=other)], payment=Payment(order_id=other))
    assert a[0].event_id != b[0].event_id


def _encodes(event: Event) -> None:
    schema = parse_schema(json.loads((AVRO_DIR / f"{event.RECORD}.avsc").read_text()))
    schemaless_writer(io.BytesIO(), schema, event.to_record())


def test_ordinary_decided_events_encode_with_their_avro_schema():
    _, out = run([order([("A", 3, "0.001"), ("B", 2, "2.55")]), cancelled()])
    _, declined = run([order([("B", 10_000, "2.55")])])
    for event in out + declined:
        _encodes(event)
