"""The recommendation state as tables, and the lists it answers; shared by the Faust worker and the benchmark.

`RecommendationState` folds batches of `OrderPlaced` into four mappings (in the worker they are Faust
tables backed by changelog topics, in the benchmark's plain consumer ordinary dicts):

    co_purchase      sku         -> {other sku: decayed weight of orders holding both}
    popularity       sku         -> decayed weight of orders holding it
    customer_recent  customer_id -> [[placed_ms, order_id, [skus]], ...] newest first
    seen_orders      order_id    -> placed_ms (a redelivered order is not counted twice)

Each key is written at most once per batch (a Faust table sends its whole value to the changelog on
every write, so per-batch coalescing keeps the changelog small). The lists are computed from the
mappings by the pure functions in `scoring`; `related()` answers are memoized until the sku's row or
popularity changes (derived, never stored: after a restart it is recomputed from the recovered tables).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventkit.events import (
    CustomerRecommendationsUpdated,
    Event,
    OrderPlaced,
    PopularProductsUpdated,
    RecommendationRefreshRequested,
    RecommendationsUpdated,
    RecommendedItem,
    utcnow,
)
from recommend_service import scoring
from recommend_service.scoring import Ranked

POPULAR_SCOPE = "all"
KINDS = ("product", "customer", "popular")


@dataclass
class Touched:
    """Keys whose lists changed in a batch."""

    skus: set[str] = field(default_factory=set)
    customers: set[str] = field(default_factory=set)
    orders: int = 0  # orders counted (redeliveries and duplicates excluded)

    @property
    def popular(self) -> bool:
        return bool(self.skus)


class RecommendationState:
    def __init__(
        self,
        co_purchase: MutableMapping[str, Any],
        popularity: MutableMapping[str, Any],
        customer_recent: MutableMapping[str, Any],
        seen_orders: MutableMapping[str, Any],
    ) -> None:
        self.co_purchase = co_purchase
        self.popularity = popularity
        self.customer_recent = customer_recent
        self.seen_orders = seen_orders
        self._related: dict[str, Ranked] = {}

    # -- folding orders in --------------------------------------------------------------------------
    def apply(self, orders: Iterable[OrderPlaced]) -> Touched:
        contributions: dict[str, scoring.Contribution] = {}
        for order in orders:
            if order.order_id in contributions or order.order_id in self.seen_orders:
                continue
            contributions[order.order_id] = scoring.contribution(order)
        batch = list(contributions.values())
        touched = Touched(orders=len(batch))
        for sku, delta in sorted(scoring.popularity_deltas(batch).items()):
            self.popularity[sku] = int(self.popularity.get(sku) or 0) + delta
            touched.skus.add(sku)
        for sku, pairs in sorted(scoring.pair_deltas(batch).items()):
            row = self.co_purchase.get(sku)
            row = {} if row is None else row
            for other, weight in pairs.items():
                row[other] = row.get(other, 0) + weight
            self.co_purchase[sku] = row  # one changelog record per sku per batch
        recents: dict[str, Any] = {}
        for c in batch:
            current = recents.get(c.customer_id) or self.customer_recent.get(c.customer_id)
            recents[c.customer_id] = scoring.add_recent(current, c)
        for customer_id, recent in sorted(recents.items()):
            self.customer_recent[customer_id] = [[ms, oid, list(skus)] for ms, oid, skus in recent]
            touched.customers.add(customer_id)
        for c in batch:
            self.seen_orders[c.order_id] = c.placed_ms
        for sku in touched.skus:
            self._related.pop(sku, None)
        return touched

    # -- answering ----------------------------------------------------------------------------------
    def knows_product(self, sku: str) -> bool:
        return self.popularity.get(sku) is not None

    def related(self, sku: str) -> Ranked:
        ranked = self._related.get(sku)
        if ranked is None:
            row = self.co_purchase.get(sku) or {}
            ranked = scoring.rank_related(row, int(self.popularity.get(sku) or 0))
            self._related[sku] = ranked
        return ranked

    def for_customer(self, customer_id: str) -> Ranked | None:
        recent = self.customer_recent.get(customer_id)
        if recent is None:
            return None
        orders = [(int(ms), str(oid), tuple(skus)) for ms, oid, skus in recent]
        return scoring.rank_for_customer(scoring.recent_skus(orders), self.related)

    def popular(self) -> Ranked:
        return scoring.rank_popular((sku, int(weight)) for sku, weight in self.popularity.items())

    # -- as events ----------------------------------------------------------------------------------
    def outputs(self, touched: Touched, now: Callable[[], datetime] = utcnow) -> list[Event]:
        """The lists to publish after a batch: every touched product and customer, and the popular list."""
        out: list[Event] = [self.product_event(sku, now()) for sku in sorted(touched.skus)]
        for customer_id in sorted(touched.customers):
            event = self.customer_event(customer_id, now())
            if event is not None:
                out.append(event)
        if touched.popular:
            out.append(self.popular_event(now()))
        return out

    def refresh(self, request: RecommendationRefreshRequested, now: Callable[[], datetime] = utcnow) -> Event | None:
        """Recompute the list a reader asked for; None if these tables know nothing of it."""
        if request.kind == "product":
            return self.product_event(request.target, now()) if self.knows_product(request.target) else None
        if request.kind == "customer":
            return self.customer_event(request.target, now())
        if request.kind == "popular":
            return self.popular_event(now())
        return None

    def product_event(self, sku: str, computed_at: datetime) -> RecommendationsUpdated:
        return RecommendationsUpdated(
            event_id=str(uuid.uuid4()),
            occurred_at=computed_at,
            sku=sku,
            items=_items(self.related(sku)),
            computed_at=computed_at,
        )

    def customer_event(self, customer_id: str, computed_at: datetime) -> CustomerRecommendationsUpdated | None:
        ranked = self.for_customer(customer_id)
        if ranked is None:
            return None
        return CustomerRecommendationsUpdated(
            event_id=str(uuid.uuid4()),
            occurred_at=computed_at,
            customer_id=customer_id,
            items=_items(ranked),
            computed_at=computed_at,
        )

    def popular_event(self, computed_at: datetime) -> PopularProductsUpdated:
        return PopularProductsUpdated(
            event_id=str(uuid.uuid4()),
            occurred_at=computed_at,
            scope=POPULAR_SCOPE,
            items=_items(self.popular()),
            computed_at=computed_at,
        )


def _items(ranked: Ranked) -> tuple[RecommendedItem, ...]:
    return tuple(RecommendedItem(sku=sku, score=score) for sku, score in ranked)


def comparable(event: Event) -> tuple[str, str, tuple[tuple[str, float], ...]]:
    """What two implementations must agree on for a published list: (record, key, items), not ids or times."""
    items = getattr(event, "items", ())
    return event.RECORD, event.key, tuple((i.sku, i.score) for i in items)
