"""Recommendation scoring as pure functions: no Faust, no Kafka, no clock.

The Faust worker (worker.py) and the plain confluent-kafka consumer of the benchmark (bench/) both call
these through `model.RecommendationState`, so their outputs can be compared record for record.

Definitions
-----------
basket(order)
    The order's distinct product skus, sorted. Non-product codes (postage, fees, vouchers:
    `eventkit.products.is_product_code`) are dropped; quantities are ignored (bought together = in
    one order).
weight(order)
    Exponential time decay by event time (the order's `placed_at`, never the wall clock), half-life
    `HALF_LIFE` (90 days): ``2 ** ((placed_at - EPOCH) / HALF_LIFE)``, kept as an exact integer in
    fixed point (`FRAC_BITS` fractional bits). A newer order weighs more than an older one; any ratio of
    two sums of weights is the decayed ratio as of *any* instant (the reference instant cancels out), so
    nothing needs re-decaying as time passes. Integer sums are exact and commutative: the order in which
    orders arrive, the batching, a restart or a second implementation cannot change a score, not even
    in the last bit (float sums could, and would then break ties differently).
popularity[s]
    Sum of the weights of the orders holding s.
co[s][t]
    Sum of the weights of the orders holding both s and t. Baskets of more than `MAX_PAIR_BASKET`
    distinct products (wholesale restocks; 26 of the first 3,458 real orders) add to popularity but
    not to pairs: they say little about what goes together and cost O(n^2).
related(s)
    The `TOP_N` skus t with the highest ``co[s][t] / popularity[s]`` (the time-decayed share of the
    orders holding s that also held t: association-rule confidence), ties broken by sku ascending.
customer recent
    The customer's `RECENT_ORDERS` latest orders by (placed_at, order_id); the recent skus are their
    distinct skus, newest order first (within an order by sku), at most `RECENT_SKUS`.
customer list
    For every t in related(s) of a recent sku s, t not itself recent: the mean over the recent skus of
    score(s -> t) (0 where t is not in related(s)); top `TOP_N`, ties by sku.
popular
    The `TOP_N` skus by popularity; score = popularity / the most popular product's popularity.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eventkit.events import OrderPlaced
from eventkit.products import is_product_code

EPOCH = datetime(2010, 1, 1, tzinfo=UTC)  # before the first order of the real data (2010-12-01)
HALF_LIFE = timedelta(days=90)
FRAC_BITS = 16
TOP_N = 20
MAX_PAIR_BASKET = 100
RECENT_ORDERS = 5
RECENT_SKUS = 20

_HALF_LIFE_MS = HALF_LIFE // timedelta(milliseconds=1)

Ranked = list[tuple[str, float]]
# customer_recent value: [placed_at in ms, order_id, skus], newest first (JSON-friendly for a changelog)
RecentOrder = tuple[int, str, tuple[str, ...]]


@dataclass(frozen=True)
class Contribution:
    """What one order adds to the state."""

    order_id: str
    customer_id: str
    placed_ms: int
    skus: tuple[str, ...]
    weight: int


def epoch_ms(instant: datetime) -> int:
    return (instant - EPOCH) // timedelta(milliseconds=1)


def basket(skus: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({sku for sku in skus if is_product_code(sku)}))


def decay_weight(placed_ms: int) -> int:
    """2 ** (placed_ms / half-life) in fixed point with FRAC_BITS fractional bits, at least 1."""
    whole, rest = divmod(placed_ms, _HALF_LIFE_MS)
    mantissa = round(2.0 ** (rest / _HALF_LIFE_MS) * (1 << FRAC_BITS))  # in [2**16, 2**17]
    return mantissa << whole if whole >= 0 else max(1, mantissa >> -whole)


def contribution(order: OrderPlaced) -> Contribution:
    placed_ms = epoch_ms(order.placed_at)
    return Contribution(
        order_id=order.order_id,
        customer_id=order.customer_id,
        placed_ms=placed_ms,
        skus=basket(item.sku for item in order.items),
        weight=decay_weight(placed_ms),
    )


def popularity_deltas(contributions: Iterable[Contribution]) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for c in contributions:
        for sku in c.skus:
            deltas[sku] = deltas.get(sku, 0) + c.weight
    return deltas


def pair_deltas(contributions: Iterable[Contribution]) -> dict[str, dict[str, int]]:
    """Per sku, what each other sku of the same baskets adds to its co-purchase row."""
    deltas: dict[str, dict[str, int]] = {}
    for c in contributions:
        if len(c.skus) < 2 or len(c.skus) > MAX_PAIR_BASKET:
            continue
        w = c.weight
        for sku in c.skus:
            row = deltas.setdefault(sku, {})
            for other in c.skus:
                if other != sku:
                    row[other] = row.get(other, 0) + w
    return deltas


def rank_related(row: Mapping[str, int], popularity: int, n: int = TOP_N) -> Ranked:
    """related(s) from s's co-purchase row and popularity (see the module doc)."""
    if popularity <= 0:
        return []
    best = heapq.nsmallest(n, row.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(sku, weight / popularity) for sku, weight in best]


def add_recent(recent: Sequence[Sequence[object]] | None, c: Contribution) -> list[RecentOrder]:
    """The customer's latest RECENT_ORDERS orders after `c` (idempotent: an order id counts once)."""
    orders: dict[str, RecentOrder] = {}
    for placed_ms, order_id, skus in recent or ():
        orders[str(order_id)] = (int(placed_ms), str(order_id), tuple(skus))  # type: ignore[call-overload,arg-type]
    orders[c.order_id] = (c.placed_ms, c.order_id, c.skus)
    return sorted(orders.values(), key=lambda o: (o[0], o[1]), reverse=True)[:RECENT_ORDERS]


def recent_skus(recent: Sequence[RecentOrder]) -> list[str]:
    seen: dict[str, None] = {}
    for _, _, skus in recent:  # newest first
        for sku in skus:
            if len(seen) >= RECENT_SKUS:
                return list(seen)
            seen.setdefault(sku, None)
    return list(seen)


def rank_for_customer(skus: Sequence[str], related: Callable[[str], Ranked], n: int = TOP_N) -> Ranked:
    """The customer list from the recent skus and each one's related(s) (see the module doc)."""
    if not skus:
        return []
    mine = set(skus)
    totals: dict[str, float] = {}
    for sku in sorted(mine):  # a fixed summation order: equal inputs give bit-equal floats
        for other, score in related(sku):
            if other not in mine:
                totals[other] = totals.get(other, 0.0) + score
    best = heapq.nsmallest(n, totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(sku, total / len(mine)) for sku, total in best]


def rank_popular(popularity: Iterable[tuple[str, int]], n: int = TOP_N) -> Ranked:
    best = heapq.nsmallest(n, popularity, key=lambda kv: (-kv[1], kv[0]))
    if not best or best[0][1] <= 0:
        return []
    top = best[0][1]
    return [(sku, weight / top) for sku, weight in best]
