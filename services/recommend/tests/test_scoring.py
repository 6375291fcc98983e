"""Scoring on real baskets (the first invoices of the UCI Online Retail data), checked against numbers this
test computes on its own (exact fractions, plain counting), with no broker."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from eventkit.events import LineItem, OrderPlaced, RecommendationRefreshRequested
from recommend_service import scoring
from recommend_service.model import RecommendationState, Touched, comparable

# (invoice, customer, stock codes in file order, invoice date) from online_retail.csv.gz; 536370 keeps its
# POST line, which the replay drops and scoring must ignore too.
REAL = [
    ("536365", "17850", ["85123A", "71053", "84406B", "84029G", "84029E", "22752", "21730"], "2010-12-01 08:26"),
    ("536366", "17850", ["22633", "22632"], "2010-12-01 08:28"),
    (
        "536367",
        "13047",
        ["84879", "22745", "22748", "22749", "22310", "84969", "22623", "22622", "21754", "21755", "21777", "48187"],
        "2010-12-01 08:34",
    ),
    ("536368", "13047", ["22960", "22913", "22912", "22914"], "2010-12-01 08:34"),
    ("536369", "13047", ["21756"], "2010-12-01 08:35"),
    (
        "536370",
        "12583",
        [
            *["22728", "22727", "22726", "21724", "21883", "10002", "21791", "21035", "22326", "22629", "22659"],
            *["22631", "22661", "21731", "22900", "21913", "22540", "22544", "22492", "POST"],
        ],
        "2010-12-01 08:45",
    ),
    ("536372", "17850", ["22632", "22633"], "2010-12-01 09:01"),
    (
        "536373",
        "17850",
        [
            *["85123A", "71053", "84406B", "20679", "37370", "21871", "21071", "21068", "82483", "82486", "82482"],
            *["82494L", "84029G", "84029E", "22752", "21730"],
        ],
        "2010-12-01 09:02",
    ),
    ("536376", "15291", ["22114", "21733"], "2010-12-01 09:32"),
]


def order(invoice: str, customer: str, skus: list[str], placed_at: datetime) -> OrderPlaced:
    return OrderPlaced(
        event_id=f"e-{invoice}",
        occurred_at=placed_at,
        order_id=f"o-{invoice}",
        customer_id=customer,
        currency="GBP",
        placed_at=placed_at,
        items=tuple(LineItem(sku=s, quantity=1, unit_price=Decimal("1.000")) for s in skus),
    )


def real_orders(same_time: bool = False) -> list[OrderPlaced]:
    when = datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    return [
        order(inv, cust, skus, when if same_time else datetime.fromisoformat(at).replace(tzinfo=UTC))
        for inv, cust, skus, at in REAL
    ]


def fresh() -> RecommendationState:
    return RecommendationState({}, {}, {}, {})


def test_basket_keeps_distinct_product_codes_sorted():
    assert scoring.basket(["85123A", "POST", "22633", "85123A", "DOT", "gift_0001_20", "M", "C2"]) == (
        "22633",
        "85123A",
    )


def test_weight_doubles_exactly_every_half_life_and_never_reaches_zero():
    t = scoring.epoch_ms(datetime(2011, 6, 1, tzinfo=UTC))
    half = scoring.HALF_LIFE // timedelta(milliseconds=1)
    assert scoring.decay_weight(t + half) == 2 * scoring.decay_weight(t)
    assert scoring.decay_weight(t + 3 * half) == 8 * scoring.decay_weight(t)
    # a quarter of a half-life later: 2 ** 0.25 more, to the fixed point's precision
    ratio = scoring.decay_weight(t + half // 4) / scoring.decay_weight(t)
    assert ratio == pytest.approx(2**0.25, rel=2**-15)
    assert scoring.decay_weight(scoring.epoch_ms(datetime(1990, 1, 1, tzinfo=UTC))) == 1


def test_related_scores_are_the_share_of_orders_holding_both_on_real_baskets():
    """All orders at one instant, so every weight is equal and a score is a plain count ratio."""
    orders = real_orders(same_time=True)
    state = fresh()
    state.apply(orders)
    baskets = [set(s for s in skus if s != "POST") for _, _, skus, _ in REAL]
    holding = Counter(s for b in baskets for s in b)
    together = Counter((a, b) for basket in baskets for a, b in itertools.permutations(basket, 2))
    for sku in ["85123A", "22632", "21756", "22728"]:
        expected = sorted(
            ((other, Fraction(n, holding[sku])) for (s, other), n in together.items() if s == sku),
            key=lambda kv: (-kv[1], kv[0]),
        )[: scoring.TOP_N]
        got = state.related(sku)
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert [score for _, score in got] == [float(f) for _, f in expected]
    # 85123A was in two orders, both with 71053 (score 1) and once with 20679 (score 1/2)
    assert dict(state.related("85123A"))["71053"] == 1.0
    assert dict(state.related("85123A"))["20679"] == 0.5
    assert state.related("21756") == []  # bought alone
    assert "POST" not in state.popularity


def test_decay_weighs_a_newer_order_more_exactly_as_defined():
    """A: {x, y} now, B: {x, z} two half-lives later -> as seen from x, z counts 4 times as much as y."""
    t0 = datetime(2011, 3, 1, tzinfo=UTC)
    orders = [
        order("1", "c1", ["11111", "22222"], t0),
        order("2", "c2", ["11111", "33333"], t0 + 2 * scoring.HALF_LIFE),
    ]
    state = fresh()
    state.apply(orders)
    w1, w2 = Fraction(1), Fraction(4)
    assert state.related("11111") == [("33333", float(w2 / (w1 + w2))), ("22222", float(w1 / (w1 + w2)))]
    # the popular list is normalised to the most popular product
    assert state.popular() == [("11111", 1.0), ("33333", float(w2 / (w1 + w2))), ("22222", float(w1 / (w1 + w2)))]


def test_ties_break_by_sku():
    state = fresh()
    state.apply([order("1", "c", ["55555", "33333", "44444", "11111"], datetime(2011, 1, 1, tzinfo=UTC))])
    assert state.related("55555") == [("11111", 1.0), ("33333", 1.0), ("44444", 1.0)]


def test_scores_do_not_depend_on_arrival_order_or_batching():
    orders = real_orders()
    reference = fresh()
    touched = reference.apply(orders)
    expected = sorted(map(comparable, reference.outputs(touched)))
    rng = random.Random(7)
    for _ in range(5):
        shuffled = orders[:]
        rng.shuffle(shuffled)
        state = fresh()
        cut = rng.randrange(1, len(shuffled))
        state.apply(shuffled[:cut])
        state.apply(shuffled[cut:])
        everything = Touched(skus=set(state.popularity), customers=set(state.customer_recent))
        assert sorted(map(comparable, state.outputs(everything))) == expected


def test_a_redelivered_order_is_counted_once():
    orders = real_orders()
    once, twice = fresh(), fresh()
    once.apply(orders)
    twice.apply(orders[:4])
    assert twice.apply(orders[2:]).orders == len(orders) - 4
    assert once.popularity == twice.popularity
    assert once.co_purchase == twice.co_purchase
    assert once.customer_recent == twice.customer_recent


def test_a_huge_basket_adds_popularity_but_no_pairs():
    skus = [f"{10000 + i}" for i in range(scoring.MAX_PAIR_BASKET + 1)]
    state = fresh()
    state.apply([order("big", "w", skus, datetime(2011, 1, 1, tzinfo=UTC))])
    assert set(state.popularity) == set(skus)
    assert state.co_purchase == {}
    assert state.related(skus[0]) == []


def test_customer_list_comes_from_recent_purchases_and_excludes_them():
    orders = real_orders(same_time=True)
    state = fresh()
    state.apply(orders)
    # everything bought together with 17850's recent products is itself one of them: nothing new to offer
    assert state.for_customer("17850") == []
    # a new customer buys 85123A: recommended are 85123A's related items, each with score(85123A -> t) / 1
    state.apply([order("x1", "new", ["85123A"], datetime(2010, 12, 2, tzinfo=UTC))])
    got = state.for_customer("new")
    assert got == state.related("85123A")[: len(got)]
    assert "85123A" not in dict(got)
    # two recent skus: the mean of both products' scores (independently: sum / 2)
    state.apply([order("x2", "new", ["22632"], datetime(2010, 12, 3, tzinfo=UTC))])
    got = dict(state.for_customer("new") or [])
    rel_a, rel_b = dict(state.related("22632")), dict(state.related("85123A"))
    for sku in set(rel_a) | set(rel_b):
        assert got[sku] == pytest.approx((rel_a.get(sku, 0.0) + rel_b.get(sku, 0.0)) / 2, abs=0)


def test_recent_orders_are_the_latest_by_event_time_whatever_the_arrival_order():
    base = datetime(2011, 1, 1, tzinfo=UTC)
    orders = [order(str(i), "c", [f"{10000 + i}"], base + timedelta(days=i)) for i in range(8)]
    a, b = fresh(), fresh()
    a.apply(orders)
    b.apply(list(reversed(orders)))
    assert a.customer_recent["c"] == b.customer_recent["c"]
    assert [oid for _, oid, _ in a.customer_recent["c"]] == ["o-7", "o-6", "o-5", "o-4", "o-3"]


def test_refresh_recomputes_known_keys_and_skips_unknown_ones():
    state = fresh()
    touched = state.apply(real_orders())
    published = {comparable(e) for e in state.outputs(touched)}
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def ask(kind: str, target: str):
        return state.refresh(
            RecommendationRefreshRequested(event_id="r", occurred_at=now, kind=kind, target=target), lambda: now
        )

    product = ask("product", "85123A")
    assert product is not None and comparable(product) in published and product.computed_at == now
    customer = ask("customer", "13047")
    assert customer is not None and comparable(customer) in published
    popular = ask("popular", "all")
    assert popular is not None and comparable(popular) in published
    assert ask("product", "99999") is None
    assert ask("customer", "nobody") is None


def test_list_records_are_what_asdict_gives():
    """The recommendation lists' fast to_record equals the generic dataclasses.asdict form."""
    import dataclasses

    state = fresh()
    touched = state.apply(real_orders())
    for event in state.outputs(touched):
        generic = dataclasses.asdict(event)
        assert event.to_record() == {**generic, "items": list(generic["items"])}
