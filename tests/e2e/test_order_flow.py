"""An order through the running system: order API -> accounting, inventory, shipping -> timeline."""

from __future__ import annotations

from decimal import Decimal

import httpx

from eventshop_tools.testing import eventually, order_body, services_in

ACCOUNTING = "http://127.0.0.1:8002"
INVENTORY = "http://127.0.0.1:8003"


def initial_stock(sku: str) -> int:
    return int(httpx.get(f"{INVENTORY}/stock/{sku}").json()["initial"])


def types(view: dict) -> list[str]:
    return [e["type"] for e in view["timeline"]]


def test_order_is_accepted_with_202_and_dispatched(order_api, place, wait_final, sku, unique) -> None:
    a, b = sku(), sku()
    response = order_api.post("/orders", json=order_body(f"c-{unique}", (a, 6, "2.55"), (b, 1, "0.001")))
    assert response.status_code == 202
    order_id = response.json()["order_id"]
    assert response.headers["location"] == f"/orders/{order_id}" == response.json()["status_url"]
    assert order_api.get(f"/orders/{order_id}").status_code == 200  # known at once, even if pending

    view = wait_final(order_id, require=("StockReserved",))
    assert view["status"] == "dispatched"
    assert services_in(view["timeline"]) == {"accounting", "inventory", "shipping"}
    t = types(view)
    assert t[0] == "OrderPlaced" and t.count("ShipmentDispatched") == 1
    assert {"PaymentCaptured", "StockReserved", "ShipmentScheduled"} <= set(t)
    captured = next(e for e in view["timeline"] if e["type"] == "PaymentCaptured")
    assert Decimal(captured["amount"]) == Decimal("2.55") * 6 + Decimal("0.001")
    for entry in view["timeline"]:
        assert entry["event_id"] and entry["occurred_at"]

    ledger = httpx.get(f"{ACCOUNTING}/ledger/c-{unique}").json()
    assert ledger["entries"] == [{"order_id": order_id, "kind": "charge", "amount": "15.301", "currency": "GBP"}]
    stock = httpx.get(f"{INVENTORY}/stock/{a}").json()
    assert stock["on_hand"] == stock["initial"] - 6


def test_declined_payment_cancels_the_shipment_and_releases_stock(place, wait_final, sku, unique) -> None:
    item = sku()
    # 100 x 60.001 = 6000.100 GBP: above the 5000.000 credit limit.
    order_id = place(order_body(f"c-{unique}", (item, 100, "60.001")))
    view = wait_final(order_id, require=("StockReleased",))
    assert view["status"] == "cancelled"
    t = types(view)
    assert "PaymentDeclined" in t and "PaymentCaptured" not in t and "ShipmentDispatched" not in t
    declined = next(e for e in view["timeline"] if e["type"] == "PaymentDeclined")
    assert "6000.100" in declined["reason"] and "credit limit" in declined["reason"]
    cancelled = next(e for e in view["timeline"] if e["type"] == "ShipmentCancelled")
    assert "payment declined" in cancelled["reason"]
    stock = eventually(lambda: httpx.get(f"{INVENTORY}/stock/{item}").json())
    assert stock["on_hand"] == stock["initial"]
    assert httpx.get(f"{ACCOUNTING}/ledger/c-{unique}").json()["entries"] == []


def test_stock_shortage_after_capture_is_refunded(place, wait_final, sku, unique) -> None:
    plenty, scarce = sku(), sku()
    available = initial_stock(scarce)
    order_id = place(order_body(f"c-{unique}", (plenty, 2, "1.25"), (scarce, available + 1, "0.10")))
    view = wait_final(order_id, require=("PaymentRefunded",))
    assert view["status"] == "cancelled"
    t = types(view)
    assert {"PaymentCaptured", "StockShortage", "ShipmentCancelled", "PaymentRefunded"} <= set(t)
    assert "StockReserved" not in t and "ShipmentDispatched" not in t
    shortage = next(e for e in view["timeline"] if e["type"] == "StockShortage")
    assert shortage["missing"] == [{"sku": scarce, "requested": available + 1, "available": available}]
    refund = next(e for e in view["timeline"] if e["type"] == "PaymentRefunded")
    assert Decimal(refund["amount"]) == 2 * Decimal("1.25") + (available + 1) * Decimal("0.10")
    ledger = httpx.get(f"{ACCOUNTING}/ledger/c-{unique}").json()
    assert [e["kind"] for e in ledger["entries"]] == ["charge", "refund"]
    assert Decimal(ledger["balance"]) == 0
    assert httpx.get(f"{INVENTORY}/stock/{plenty}").json()["on_hand"] == initial_stock(plenty)  # none reserved


def test_unknown_order_is_404(order_api) -> None:
    response = order_api.get("/orders/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]
