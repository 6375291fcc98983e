"""The order API's edges: idempotent retries, every bad request and the 4xx it gets."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Consumer, TopicPartition

from eventshop_tools.testing import Infra, order_body


def placed_high_watermarks(infra: Infra, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": "t-watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def test_idempotency_key_returns_the_same_order_and_produces_nothing_new(
    infra, catalogue, order_api, place, wait_final, sku, unique
) -> None:
    body = order_body(f"c-{unique}", (sku(), 3, "4.95"))
    first = place(body, key=f"key-{unique}")
    topic = catalogue.topic_for("OrderPlaced").name
    before = placed_high_watermarks(infra, topic)
    retry = order_api.post("/orders", json=body, headers={"Idempotency-Key": f"key-{unique}"})
    assert retry.status_code == 202
    assert retry.json()["order_id"] == first
    assert placed_high_watermarks(infra, topic) == before
    view = wait_final(first)
    assert [e["type"] for e in view["timeline"]].count("OrderPlaced") == 1

    other = order_api.post("/orders", json={**body, "country": "France"}, headers={"Idempotency-Key": f"key-{unique}"})
    assert other.status_code == 409
    assert "different" in other.json()["detail"]
    # The same key from another customer is another order.
    assert place({**body, "customer_id": f"d-{unique}"}, key=f"key-{unique}") != first


GOOD_LINE = {"sku": "85123A", "quantity": 1, "unit_price": "2.55"}
GOOD = {"customer_id": "17850", "currency": "GBP", "items": [GOOD_LINE]}

# (name, body or raw bytes, extra headers, expected status, a word the reason must contain)
BAD_REQUESTS = [
    ("not-json", b"{not json", {}, 422, "json"),
    ("empty-body", b"", {}, 422, "missing"),
    ("array-body", [GOOD], {}, 422, "dict"),
    ("unknown-field", {**GOOD, "coupon": "FREE"}, {}, 422, "extra"),
    ("unknown-line-field", {**GOOD, "items": [{**GOOD_LINE, "discount": 1}]}, {}, 422, "extra"),
    ("no-items", {**GOOD, "items": []}, {}, 422, "at least 1"),
    ("missing-customer", {k: v for k, v in GOOD.items() if k != "customer_id"}, {}, 422, "missing"),
    ("empty-customer", {**GOOD, "customer_id": ""}, {}, 422, "at least 1"),
    ("wrong-currency", {**GOOD, "currency": "USD"}, {}, 422, "GBP"),
    ("zero-quantity", {**GOOD, "items": [{**GOOD_LINE, "quantity": 0}]}, {}, 422, "greater than 0"),
    ("negative-quantity", {**GOOD, "items": [{**GOOD_LINE, "quantity": -5}]}, {}, 422, "greater than 0"),
    ("fractional-quantity", {**GOOD, "items": [{**GOOD_LINE, "quantity": 1.5}]}, {}, 422, "integer"),
    ("string-quantity", {**GOOD, "items": [{**GOOD_LINE, "quantity": "2"}]}, {}, 422, "integer"),
    ("huge-quantity", {**GOOD, "items": [{**GOOD_LINE, "quantity": 2**31}]}, {}, 422, "less than or equal"),
    ("negative-price", {**GOOD, "items": [{**GOOD_LINE, "unit_price": "-1.00"}]}, {}, 422, "greater than or equal"),
    ("four-decimals", {**GOOD, "items": [{**GOOD_LINE, "unit_price": "0.0001"}]}, {}, 422, "decimal places"),
    ("nan-price", {**GOOD, "items": [{**GOOD_LINE, "unit_price": "NaN"}]}, {}, 422, "finite"),
    ("text-price", {**GOOD, "items": [{**GOOD_LINE, "unit_price": "cheap"}]}, {}, 422, "decimal"),
    ("empty-sku", {**GOOD, "items": [{**GOOD_LINE, "sku": ""}]}, {}, 422, "at least 1"),
    ("too-many-lines", {**GOOD, "items": [GOOD_LINE] * 5001}, {}, 422, "at most 5000"),
    ("too-large", {**GOOD, "items": [{**GOOD_LINE, "description": "x" * 400}] * 3000}, {}, 413, "larger than"),
    ("empty-idempotency-key", GOOD, {"Idempotency-Key": ""}, 422, "at least 1"),
]


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "reason"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
def test_bad_request_gets_a_4xx_with_a_reason(order_api, name, body, headers, status, reason) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = order_api.post("/orders", content=content, headers={"content-type": "application/json", **headers})
    assert response.status_code == status, response.text
    detail = json.dumps(response.json()["detail"])
    assert reason.lower() in detail.lower(), detail
    assert "Traceback" not in response.text


def test_chunked_body_over_the_limit_is_refused_before_parsing(order_api) -> None:
    def chunks():
        yield b'{"customer_id": "17850", "currency": "GBP", "items": ['
        for _ in range(20_000):
            yield json.dumps({**GOOD_LINE, "description": "y" * 100}).encode() + b","
        yield b"]}"

    response = order_api.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_largest_real_invoice_size_is_accepted(order_api, sku, unique) -> None:
    items = [{"sku": sku(), "quantity": 1, "unit_price": "0.85", "description": "A REAL-SIZED LINE"}] * 1114
    response = order_api.post("/orders", json={"customer_id": f"c-{unique}", "currency": "GBP", "items": items})
    assert response.status_code == 202, response.text
