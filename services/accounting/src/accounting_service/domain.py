"""Accounting decisions as a pure function: (payment, event) -> (payment, events to emit).

Rule for capture (documented in the README): an order is captured when its currency is one we settle
(GBP) and its exact total (sum of quantity x unit_price) is at most the credit limit
(`ACCOUNTING_CREDIT_LIMIT`, default 5000.000 GBP); otherwise it is declined with the reason.
A ShipmentCancelled after a capture refunds the full amount. If the cancellation arrives before the
order (events may come in any order), the order is decided as usual and refunded at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

from eventkit.events import (
    OrderEvent,
    OrderPlaced,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    ShipmentCancelled,
)

CONSUMES = (OrderPlaced, ShipmentCancelled)
SETTLED_CURRENCIES = frozenset({"GBP"})


@dataclass(frozen=True)
class Payment:
    order_id: str
    customer_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    status: str = "new"  # new -> captured | declined; captured -> refunded
    cancelled: str | None = None  # the shipment's cancellation reason, once known


def decline_reason(total: Decimal, currency: str, credit_limit: Decimal) -> str | None:
    if currency not in SETTLED_CURRENCIES:
        return f"currency {currency} is not settled here"
    if total > credit_limit:
        return f"order total {total} {currency} exceeds the credit limit of {credit_limit} {currency}"
    return None


def decide(payment: Payment, event: OrderEvent, credit_limit: Decimal) -> tuple[Payment, list[OrderEvent]]:
    out: list[OrderEvent] = []
    if isinstance(event, OrderPlaced) and payment.status == "new":
        total = event.total
        payment = replace(payment, customer_id=event.customer_id, amount=total, currency=event.currency)
        reason = decline_reason(total, event.currency, credit_limit)
        who = {"customer_id": event.customer_id, "amount": total, "currency": event.currency}
        if reason is None:
            out.append(PaymentCaptured.create(order_id=event.order_id, **who))
            payment = replace(payment, status="captured")
        else:
            out.append(PaymentDeclined.create(order_id=event.order_id, **who, reason=reason))
            payment = replace(payment, status="declined")
    elif isinstance(event, ShipmentCancelled) and payment.cancelled is None:
        payment = replace(payment, cancelled=event.reason)
    if payment.status == "captured" and payment.cancelled is not None:
        assert payment.customer_id is not None and payment.amount is not None and payment.currency is not None
        out.append(
            PaymentRefunded.create(
                order_id=payment.order_id,
                customer_id=payment.customer_id,
                amount=payment.amount,
                currency=payment.currency,
                reason=f"shipment cancelled: {payment.cancelled}",
            )
        )
        payment = replace(payment, status="refunded")
    return payment, out
