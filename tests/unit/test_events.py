"""Hand-written record builders say exactly what the generic one would."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from eventkit.events import LineItem, OrderPlaced, utcnow


def test_order_placed_record_equals_the_generic_one() -> None:
    order = OrderPlaced.create(
        order_id="o-1",
        customer_id="17850",
        currency="GBP",
        country=None,
        placed_at=utcnow(),
        items=(
            LineItem(sku="85123A", quantity=6, unit_price=Decimal("2.550"), description="WHITE HANGING HEART"),
            LineItem(sku="PADS", quantity=1, unit_price=Decimal("0.001")),
        ),
    )
    generic = dataclasses.asdict(order)
    generic["items"] = list(generic["items"])
    assert order.to_record() == generic
