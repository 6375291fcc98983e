"""The read API's rules without a broker: stale-while-revalidate, one refresh in flight per key, fallback.

The app is built for an unreachable broker and its lifespan (the cache-topic follower) is not started;
the view is filled by hand and the refresh producer is a recording fake.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from eventkit.events import RecommendationRefreshRequested, RecommendedItem, utcnow
from recommend_service.api import create_app
from recommend_service.settings import ApiSettings
from recommend_service.view import Entry, Refresher


class FakeProducer:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, str, RecommendationRefreshRequested]] = []
        self.fail = fail

    async def send(self, topic: str, key: str, event: Any) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append((topic, key, event))


def items(*pairs: tuple[str, float]) -> tuple[RecommendedItem, ...]:
    return tuple(RecommendedItem(sku=s, score=v) for s, v in pairs)


@pytest.fixture
def api() -> tuple[TestClient, Any, FakeProducer]:
    app = create_app(ApiSettings(kafka_bootstrap_servers="127.0.0.1:1", recommend_max_age=60))
    fake = FakeProducer()
    app.state.refresher.producer = fake
    return TestClient(app), app.state.view, fake


def test_a_fresh_entry_is_served_as_it_is(api) -> None:
    client, view, fake = api
    now = utcnow()
    view.put(("product", "85123A"), Entry(items(("71053", 0.9), ("21733", 0.5), ("22423", 0.1)), now))
    body = client.get("/recommendations/products/85123A", params={"limit": 2}).json()
    assert body == {
        "sku": "85123A",
        "items": [{"sku": "71053", "score": 0.9}, {"sku": "21733", "score": 0.5}],
        "computed_at": now.isoformat(),
        "stale": False,
        "fallback": False,
    }
    assert fake.sent == []


def test_a_stale_entry_is_answered_at_once_and_one_refresh_is_asked_for(api) -> None:
    client, view, fake = api
    old = utcnow() - timedelta(minutes=5)
    view.put(("customer", "17850"), Entry(items(("22632", 0.4)), old))
    for _ in range(5):
        body = client.get("/recommendations/customers/17850").json()
        assert body["stale"] is True and body["items"] == [{"sku": "22632", "score": 0.4}]
    assert [(key, e.kind, e.target, e.stale_computed_at) for _, key, e in fake.sent] == [
        ("17850", "customer", "17850", old)
    ]
    # a newer list arrives: no longer stale, and the next stale spell may ask again
    view.put(("customer", "17850"), Entry(items(("22633", 0.3)), utcnow()))
    assert client.get("/recommendations/customers/17850").json()["stale"] is False
    view.put(("customer", "17850"), Entry(items(("22633", 0.3)), old + timedelta(seconds=1)))
    client.get("/recommendations/customers/17850")
    assert len(fake.sent) == 2


def test_unknown_or_empty_keys_fall_back_to_the_popular_list(api) -> None:
    client, view, _ = api
    now = utcnow()
    assert client.get("/recommendations/products/99999").json() == {
        "sku": "99999",
        "items": [],
        "computed_at": None,
        "stale": False,
        "fallback": True,
    }
    view.put(("popular", "all"), Entry(items(("85123A", 1.0), ("22423", 0.75)), now))
    view.put(("product", "21756"), Entry((), now))  # bought only alone
    for path in ("/recommendations/products/99999", "/recommendations/products/21756", "/recommendations/customers/x"):
        body = client.get(path).json()
        assert body["fallback"] is True and body["computed_at"] == now.isoformat()
        assert [i["sku"] for i in body["items"]] == ["85123A", "22423"]
    # a product never recommends itself, even from the popular list
    assert [i["sku"] for i in client.get("/recommendations/products/85123A").json()["items"]] == ["22423"]


def test_limit_is_validated(api) -> None:
    client, _, _ = api
    assert client.get("/recommendations/products/1", params={"limit": 0}).status_code == 422
    assert client.get("/recommendations/products/1", params={"limit": 21}).status_code == 422


def test_the_health_check_waits_for_the_view_to_load(api) -> None:
    client, view, _ = api
    assert client.get("/health").status_code == 503
    view.loaded.set()
    assert client.get("/health").json()["status"] == "ok"


def test_a_refresh_in_flight_expires_and_a_failed_one_can_be_retried() -> None:
    async def scenario() -> None:
        fake = FakeProducer()
        refresher = Refresher(fake, "recommend.refresh-requested", timeout=0.05)  # type: ignore[arg-type]
        old = utcnow() - timedelta(hours=1)
        assert refresher.request(("product", "A"), old) is True
        assert refresher.request(("product", "A"), old) is False
        assert refresher.request(("product", "B"), old) is True  # one per key
        await asyncio.sleep(0.06)
        assert refresher.request(("product", "A"), old) is True  # nobody answered in time
        await asyncio.sleep(0)
        assert [key for _, key, _ in fake.sent] == ["A", "B", "A"]
        refresher.landed(("product", "B"), Entry((), old))  # not newer: still waiting
        assert refresher.in_flight() == 2
        refresher.landed(("product", "B"), Entry((), utcnow()))
        assert refresher.in_flight() == 1

        down = Refresher(FakeProducer(fail=True), "t", timeout=60)  # type: ignore[arg-type]
        assert down.request(("popular", "all"), None) is True
        await asyncio.sleep(0)
        assert down.failed == 1 and down.in_flight() == 0
        assert down.request(("popular", "all"), None) is True

    asyncio.run(scenario())
