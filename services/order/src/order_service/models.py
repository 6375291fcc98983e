"""The order API's request and response bodies. Unknown fields are refused, not ignored."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Avro `int` is 32-bit; a quantity must fit it.
MAX_QUANTITY = 2**31 - 1
# The largest real invoice has 1,114 lines; leave room, but keep one order a bounded thing.
MAX_LINES = 5000

Text = Annotated[str, Field(min_length=1, max_length=200)]


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(gt=0, le=MAX_QUANTITY, strict=True)]
    unit_price: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3, allow_inf_nan=False)]
    description: Annotated[str, Field(max_length=500)] | None = None


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: Text
    currency: Literal["GBP"]
    country: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    items: Annotated[list[OrderLine], Field(min_length=1, max_length=MAX_LINES)]


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
