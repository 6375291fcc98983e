"""One frozen dataclass per Avro record in schemas/avro (a unit test keeps them field-for-field equal).

Handlers only ever see these objects; bytes stop at the serde edge. Money is `Decimal` (Avro decimal,
scale 3), instants are timezone-aware `datetime`s (Avro timestamp-millis).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, Self

# Event ids are derived from (order, event type) so that a re-emitted decision carries the same id:
# every order has at most one event of each type, and consumers deduplicate on it.
_EVENT_NS = uuid.UUID("5b1f3c0e-8d7a-4c2b-9a61-0e6d2f4b7a10")
MONEY_PLACES = Decimal("0.001")


def event_id_for(order_id: str, record_name: str) -> str:
    return str(uuid.uuid5(_EVENT_NS, f"{order_id}/{record_name}"))


def utcnow() -> datetime:
    # Avro timestamp-millis keeps milliseconds; trimming here makes round-trips compare equal.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every event carries; `key` is its Kafka key."""

    RECORD: ClassVar[str] = ""
    event_id: str
    occurred_at: datetime

    @property
    def key(self) -> str:
        raise NotImplementedError

    def to_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**record)


@dataclass(frozen=True, kw_only=True)
class OrderEvent(Event):
    """An event about one order, keyed by its order_id."""

    order_id: str

    @property
    def key(self) -> str:
        return self.order_id

    @classmethod
    def create(cls, *, order_id: str, **fields: Any) -> Self:
        """A new event of this type about `order_id`, with its derived id and the current time."""
        return cls(event_id=event_id_for(order_id, cls.RECORD), occurred_at=utcnow(), order_id=order_id, **fields)


@dataclass(frozen=True, kw_only=True)
class LineItem:
    sku: str
    quantity: int
    unit_price: Decimal
    description: str | None = None


@dataclass(frozen=True, kw_only=True)
class StockLine:
    sku: str
    quantity: int


@dataclass(frozen=True, kw_only=True)
class Shortfall:
    sku: str
    requested: int
    available: int


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(OrderEvent):
    RECORD: ClassVar[str] = "OrderPlaced"
    customer_id: str
    currency: str
    country: str | None = None
    placed_at: datetime
    items: tuple[LineItem, ...]

    def __post_init__(self) -> None:
        # What the order API guarantees, checked again for records that bypassed it.
        if not self.items:
            raise ValueError("an order has at least one line")
        for item in self.items:
            if item.quantity <= 0 or item.unit_price < 0:
                raise ValueError(f"line {item.sku}: quantity must be > 0 and unit_price >= 0")

    def to_record(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies every line and was most of the encoding time.
        return {
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "country": self.country,
            "placed_at": self.placed_at,
            "items": [
                {"sku": i.sku, "quantity": i.quantity, "unit_price": i.unit_price, "description": i.description}
                for i in self.items
            ],
        }

    @property
    def total(self) -> Decimal:
        return sum((i.unit_price * i.quantity for i in self.items), Decimal(0)).quantize(MONEY_PLACES)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "items": tuple(LineItem(**i) for i in record["items"])})


@dataclass(frozen=True, kw_only=True)
class PaymentCaptured(OrderEvent):
    RECORD: ClassVar[str] = "PaymentCaptured"
    customer_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class PaymentDeclined(OrderEvent):
    RECORD: ClassVar[str] = "PaymentDeclined"
    customer_id: str
    amount: Decimal
    currency: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class PaymentRefunded(OrderEvent):
    RECORD: ClassVar[str] = "PaymentRefunded"
    customer_id: str
    amount: Decimal
    currency: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class StockReserved(OrderEvent):
    RECORD: ClassVar[str] = "StockReserved"
    lines: tuple[StockLine, ...]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "lines": tuple(StockLine(**x) for x in record["lines"])})


@dataclass(frozen=True, kw_only=True)
class StockShortage(OrderEvent):
    RECORD: ClassVar[str] = "StockShortage"
    missing: tuple[Shortfall, ...]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "missing": tuple(Shortfall(**x) for x in record["missing"])})


@dataclass(frozen=True, kw_only=True)
class StockReleased(OrderEvent):
    RECORD: ClassVar[str] = "StockReleased"
    lines: tuple[StockLine, ...]
    reason: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "lines": tuple(StockLine(**x) for x in record["lines"])})


@dataclass(frozen=True, kw_only=True)
class ShipmentScheduled(OrderEvent):
    RECORD: ClassVar[str] = "ShipmentScheduled"
    shipment_id: str
    country: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShipmentDispatched(OrderEvent):
    RECORD: ClassVar[str] = "ShipmentDispatched"
    shipment_id: str


@dataclass(frozen=True, kw_only=True)
class ShipmentCancelled(OrderEvent):
    RECORD: ClassVar[str] = "ShipmentCancelled"
    shipment_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RecommendedItem:
    sku: str
    score: float


def _list_record(event: Any, key_field: str) -> dict[str, Any]:
    """to_record of a recommendation list without dataclasses.asdict's deep copies (these are written often)."""
    return {
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        key_field: getattr(event, key_field),
        "items": [{"sku": item.sku, "score": item.score} for item in event.items],
        "computed_at": event.computed_at,
    }


@dataclass(frozen=True, kw_only=True)
class RecommendationsUpdated(Event):
    """The products most often bought together with `sku` (written by the recommend stream app)."""

    RECORD: ClassVar[str] = "RecommendationsUpdated"
    sku: str
    items: tuple[RecommendedItem, ...]
    computed_at: datetime

    @property
    def key(self) -> str:
        return self.sku

    def to_record(self) -> dict[str, Any]:
        return _list_record(self, "sku")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "items": tuple(RecommendedItem(**i) for i in record["items"])})


@dataclass(frozen=True, kw_only=True)
class CustomerRecommendationsUpdated(Event):
    """Products for one customer, from what the customer bought recently (written by the recommend stream app)."""

    RECORD: ClassVar[str] = "CustomerRecommendationsUpdated"
    customer_id: str
    items: tuple[RecommendedItem, ...]
    computed_at: datetime

    @property
    def key(self) -> str:
        return self.customer_id

    def to_record(self) -> dict[str, Any]:
        return _list_record(self, "customer_id")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "items": tuple(RecommendedItem(**i) for i in record["items"])})


@dataclass(frozen=True, kw_only=True)
class PopularProductsUpdated(Event):
    """The most popular products of a scope ("all"), the fallback list (written by the recommend stream app)."""

    RECORD: ClassVar[str] = "PopularProductsUpdated"
    scope: str
    items: tuple[RecommendedItem, ...]
    computed_at: datetime

    @property
    def key(self) -> str:
        return self.scope

    def to_record(self) -> dict[str, Any]:
        return _list_record(self, "scope")

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Self:
        return cls(**{**record, "items": tuple(RecommendedItem(**i) for i in record["items"])})


@dataclass(frozen=True, kw_only=True)
class RecommendationRefreshRequested(Event):
    """A request (imperative in intent, past tense as a fact) to recompute one cached list."""

    RECORD: ClassVar[str] = "RecommendationRefreshRequested"
    kind: str  # "product" | "customer" | "popular"
    target: str
    stale_computed_at: datetime | None = None

    @property
    def key(self) -> str:
        return self.target


@dataclass(frozen=True, kw_only=True)
class UnknownEvent:
    """An event whose record type this process has no class for (e.g. a newer service's event).

    It still has a name and its fields as the writer's schema gave them, which is all a timeline needs.
    """

    record_name: str
    fields: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.RECORD: cls
    for cls in (
        OrderPlaced,
        PaymentCaptured,
        PaymentDeclined,
        PaymentRefunded,
        StockReserved,
        StockShortage,
        StockReleased,
        ShipmentScheduled,
        ShipmentDispatched,
        ShipmentCancelled,
        RecommendationsUpdated,
        CustomerRecommendationsUpdated,
        PopularProductsUpdated,
        RecommendationRefreshRequested,
    )
}
