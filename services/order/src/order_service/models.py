"""The order API's request and response bodies. Unknown fields are refused, not ignored."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from eventkit.events import MONEY_PLACES, LineItem, OrderPlaced

# Bounds that keep every derived number inside its Avro type: quantities (also summed per SKU) in `int`,
# totals in decimal(18, 3). The real data peaks at 80,995 units and 38,970 GBP per line.
MAX_QUANTITY = 1_000_000
MAX_TOTAL = Decimal(10) ** 15
# The largest real invoice has 1,114 lines; leave room, but keep one order a bounded thing.
MAX_LINES = 5000

Text = Annotated[str, Field(min_length=1, max_length=200)]


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0, le=MAX_QUANTITY, strict=True)]
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=3, allow_inf_nan=False)]
    description: Annotated[str, Field(max_length=500)] | None = None

    @field_validator("unit_price")
    @classmethod
    def three_places(cls, price: Decimal) -> Decimal:
        # "2.5500" passed the decimal_places check (trailing zeros); store every price at scale 3.
        return price.quantize(MONEY_PLACES)


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Text
    currency: Literal["GBP"]
    country: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]

    @model_validator(mode="after")
    def bounded(self) -> OrderRequest:
        per_sku: Counter[str] = Counter()
        for line in self.items:
            per_sku[line.sku] += line.quantity
        sku, most = per_sku.most_common(1)[0]
        if most > MAX_QUANTITY:
            raise ValueError(f"SKU {sku} is ordered {most} times in total; at most {MAX_QUANTITY} per order")
        total = sum((line.unit_price * line.quantity for line in self.items), Decimal(0))
        if total >= MAX_TOTAL:
            raise ValueError(f"order total must be below {MAX_TOTAL}")
        return self

    def to_event(self, order_id: str, placed_at: datetime) -> OrderPlaced:
        return OrderPlaced.create(
            order_id=order_id,
            customer_id=self.customer_id,
            currency=self.currency,
            country=self.country,
            placed_at=placed_at,
            items=tuple(
                LineItem(sku=i.sku, quantity=i.quantity, unit_price=i.unit_price, description=i.description)
                for i in self.items
            ),
        )


class OrderAccepted(BaseModel):
    order_id: str
    status_url: str


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    event_id: str
    occurred_at: str


class OrderView(BaseModel):
    order_id: str
    status: Literal["pending", "dispatched", "cancelled"]
    timeline: list[TimelineEntry]
