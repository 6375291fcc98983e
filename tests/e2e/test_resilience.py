"""Asynchronous over synchronous: the order API keeps accepting while the services are down, and never
answers 202 for what Kafka did not confirm."""

from __future__ import annotations

import time

import pytest

from eventshop_tools import stack
from eventshop_tools.testing import order_body, services_in

pytestmark = pytest.mark.disruptive
DOWNSTREAM = ("accounting", "inventory", "shipping")


@pytest.fixture
def controllable(infra):
    if infra.how == "env":
        pytest.skip("the processes belong to someone else (KAFKA_BOOTSTRAP_SERVERS given)")
    return infra


def test_orders_are_accepted_while_every_downstream_service_is_stopped(
    controllable, order_api, place, wait_final, sku, unique
) -> None:
    for name in DOWNSTREAM:
        stack.stop(stack.component(name))
    try:
        order_ids = [place(order_body(f"c-{unique}", (sku(), 2, "1.50"))) for _ in range(5)]
        time.sleep(1)
        for order_id in order_ids:
            view = order_api.get(f"/orders/{order_id}").json()
            assert view["status"] == "pending"
            assert [e["type"] for e in view["timeline"]] == ["OrderPlaced"]
    finally:
        for name in DOWNSTREAM:
            stack.start(stack.component(name))
    for order_id in order_ids:
        view = wait_final(order_id, timeout=90)
        assert view["status"] == "dispatched"
        assert services_in(view["timeline"]) == set(DOWNSTREAM)


def test_no_202_while_the_broker_is_down_and_recovery_after(controllable, order_api, place, wait_final, sku, unique):
    kafka = stack.component("kafka")
    stack.stop(kafka)
    try:
        began = time.monotonic()
        response = order_api.post("/orders", json=order_body(f"c-{unique}", (sku(), 1, "1.00")))
        assert response.status_code == 503, response.text
        assert "nothing was accepted" in response.json()["detail"]
        assert time.monotonic() - began < 20
    finally:
        stack.start(kafka)
    order_id = place(order_body(f"c-{unique}", (sku(), 1, "1.00")))
    assert wait_final(order_id, timeout=120)["status"] == "dispatched"
