"""Unit tests of the push hub and a follower's stream (real SQLite timeline, no broker, no network)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from eventkit.consumer import Received
from eventkit.events import (
    LineItem,
    OrderEvent,
    OrderPlaced,
    PaymentCaptured,
    PaymentRefunded,
    ShipmentCancelled,
    ShipmentDispatched,
    ShipmentScheduled,
    StockReserved,
    StockShortage,
)
from eventkit.store import StateStore
from eventshop_tools.testing import eventually
from order_service import streams, view
from order_service.push import PING, Follower, Push, PushHub, TooSlow, UnknownOrder


def placed(order_id: str) -> OrderPlaced:
    item = LineItem(sku="85123A", quantity=6, unit_price=Decimal("2.550"))
    return OrderPlaced.create(
        order_id=order_id, customer_id="17850", currency="GBP", placed_at=datetime.now(UTC), items=(item,)
    )


def happy_path(order_id: str) -> list[OrderEvent]:
    return [
        placed(order_id),
        ShipmentScheduled.create(order_id=order_id, shipment_id="s1"),
        PaymentCaptured.create(order_id=order_id, customer_id="17850", amount=Decimal("15.300"), currency="GBP"),
        StockReserved.create(order_id=order_id, lines=()),
        ShipmentDispatched.create(order_id=order_id, shipment_id="s1"),
    ]


class Timeline:
    """The order view's real store and projection, with the hub told of each committed row."""

    def __init__(self, store: StateStore, hub: PushHub) -> None:
        self.store, self.hub, self.reads = store, hub, 0
        self.during_read: Callable[[], None] | None = None

    def add(self, event: OrderEvent, notify: bool = True) -> None:
        received = Received(topic="orders.x", partition=0, offset=0, key=event.order_id, event=event)
        view.project(self.store, received, self.hub.notify_threadsafe if notify else None)

    def read(self, order_id: str, after: str | None) -> view.Snapshot:
        self.reads += 1
        if self.during_read is not None:  # e.g. the consumer commits a row while the follower reads
            self.during_read()
        with contextlib.closing(self.store.read()) as db:
            return view.snapshot(db, order_id, after)


@pytest.fixture
def hub() -> PushHub:
    return PushHub(queue_limit=64)


@pytest.fixture
def timeline(tmp_path, hub) -> Timeline:
    return Timeline(view.open_store(tmp_path / "order.db"), hub)


def run(main: Callable[[], Awaitable[object]]) -> object:
    return asyncio.run(asyncio.wait_for(main(), timeout=10))


async def collect(follower: Follower, until_final: bool = True, limit: int = 100) -> list[Push]:
    got: list[Push] = []
    async with contextlib.aclosing(follower.messages()) as pushes:
        async for push in pushes:
            got.append(push)
            if len(got) >= limit or (not until_final and push.kind == "ping"):
                break
    return got


def events_of(pushes: list[Push]) -> list[str]:
    return [json.loads(p.text)["type"] for p in pushes if p.kind == "event"]


def order_id() -> str:
    return str(uuid.uuid4())


# -- the stream: stored, then live, in order, once ---------------------------------------------------------


def test_stored_then_live_rows_in_arrival_order_then_final(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events[:2]:
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, ping_seconds=5)
        await follower.open()
        task = asyncio.create_task(collect(follower))
        for e in events[2:]:  # from the consumer's thread, after each commit
            await asyncio.to_thread(timeline.add, e)
        got = await task
        follower.close()
        return got

    got = run(main)
    assert events_of(got) == [e.RECORD for e in events]
    assert [p.event_id for p in got[:-1]] == [e.event_id for e in events]
    assert json.loads(got[-1].text) == {"type": "final", "order_id": oid, "status": "dispatched", "final": True}
    stats = hub.stats()
    assert (stats["followers"], stats["orders_followed"], stats["dropped_slow"]) == (0, 0, 0)
    assert stats["view_lag_ms"]["n"] == 3  # the rows committed while followed: event -> commit delays


def test_a_row_committed_while_the_follower_reads_is_sent_once(timeline, hub) -> None:
    """The gap between the 202 and the subscription: a row that is both stored and queued goes out once."""
    oid = order_id()
    events = happy_path(oid)
    timeline.add(events[0])
    timeline.during_read = lambda: timeline.add(events[1])  # committed after subscribe, before the read

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, ping_seconds=5)
        await follower.open()
        assert timeline.reads == 1
        timeline.during_read = None
        for e in events[2:]:  # committed after the read, before the stream starts
            await asyncio.to_thread(timeline.add, e)
        return await collect(follower)

    got = run(main)
    assert events_of(got) == [e.RECORD for e in events]  # ShipmentScheduled once, though read and queued
    assert got[-1].kind == "final"


def test_rows_committed_before_subscribing_without_notice_are_read_from_the_store(timeline, hub) -> None:
    oid = order_id()
    for e in happy_path(oid):
        timeline.add(e, notify=False)  # nobody followed then

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid)
        await follower.open()
        return await collect(follower)

    assert events_of(run(main)) == [e.RECORD for e in happy_path(oid)]


def test_resume_after_an_event_id_sends_only_what_came_after(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events[:3]:
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, after_event_id=events[1].event_id)
        await follower.open()
        task = asyncio.create_task(collect(follower))
        for e in events[3:]:
            await asyncio.to_thread(timeline.add, e)
        return await task

    got = run(main)
    assert [p.event_id for p in got if p.kind == "event"] == [e.event_id for e in events[2:]]


def test_resume_after_an_id_this_instance_does_not_know_replays_everything(timeline, hub) -> None:
    oid = order_id()
    for e in happy_path(oid):
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, after_event_id="not-an-event-of-this-order")
        await follower.open()
        return await collect(follower)

    assert events_of(run(main)) == [e.RECORD for e in happy_path(oid)]


def shortage_story(order_id: str) -> list[OrderEvent]:
    """Captured, but out of stock: cancelled, then the payment is refunded."""
    return [
        placed(order_id),
        ShipmentScheduled.create(order_id=order_id, shipment_id="s1"),
        PaymentCaptured.create(order_id=order_id, customer_id="1", amount=Decimal("1.000"), currency="GBP"),
        StockShortage.create(order_id=order_id, missing=()),
        ShipmentCancelled.create(order_id=order_id, shipment_id="s1", reason="stock shortage"),
        PaymentRefunded.create(order_id=order_id, customer_id="1", amount=Decimal("1.000"), currency="GBP", reason="x"),
    ]


def test_final_order_replays_rows_after_the_final_event_then_final(timeline, hub) -> None:
    oid = order_id()
    events = shortage_story(oid)
    for e in events:
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid)
        await follower.open()
        return await collect(follower)

    got = run(main)
    assert events_of(got) == [e.RECORD for e in events]
    assert json.loads(got[-1].text)["status"] == "cancelled"


def test_final_waits_for_the_rest_of_the_story_then_comes_last(timeline, hub) -> None:
    """The refund comes after the cancellation; a payment decision may reach the view after it too."""
    oid = order_id()
    events = shortage_story(oid)
    late = [events[2], events[5]]  # PaymentCaptured, then PaymentRefunded, both after ShipmentCancelled
    for e in events:
        if e not in late:
            timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, final_wait_seconds=10)
        await follower.open()
        stream = follower.messages()
        got = [await anext(stream) for _ in range(4)]  # stored: up to ShipmentCancelled
        for e in late:
            await asyncio.to_thread(timeline.add, e)
            got.append(await anext(stream))
        got.append(await anext(stream))
        return got

    got = run(main)
    assert events_of(got) == [*(e.RECORD for e in events if e not in late), "PaymentCaptured", "PaymentRefunded"]
    assert json.loads(got[-1].text)["final"] is True


def test_final_is_sent_when_the_wait_for_the_rest_runs_out(timeline, hub) -> None:
    oid = order_id()
    events = shortage_story(oid)[:-1]  # the refund never comes
    for e in events:
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, final_wait_seconds=0.05)
        await follower.open()
        return await collect(follower)

    got = run(main)
    assert events_of(got) == [e.RECORD for e in events]
    assert json.loads(got[-1].text)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("types", "missing"),
    [
        (["OrderPlaced", "ShipmentScheduled"], set()),  # pending: nothing awaited
        (["OrderPlaced", "PaymentCaptured", "StockReserved", "ShipmentScheduled", "ShipmentDispatched"], set()),
        (["ShipmentDispatched", "OrderPlaced", "StockReserved", "ShipmentScheduled"],
         {"PaymentCaptured | PaymentDeclined"}),
        (["OrderPlaced", "ShipmentScheduled", "StockReserved", "PaymentDeclined", "ShipmentCancelled"],
         {"StockReleased"}),
        (["OrderPlaced", "ShipmentScheduled", "StockShortage", "PaymentDeclined", "ShipmentCancelled"], set()),
        (["OrderPlaced", "ShipmentScheduled", "StockShortage", "ShipmentCancelled"],
         {"PaymentCaptured | PaymentDeclined"}),
        (["OrderPlaced", "ShipmentScheduled", "StockShortage", "ShipmentCancelled", "PaymentCaptured"],
         {"PaymentRefunded"}),
        (["ShipmentCancelled"], {"OrderPlaced", "PaymentCaptured | PaymentDeclined",
                                 "StockReserved | StockShortage", "ShipmentScheduled"}),
    ],
)  # fmt: skip
def test_awaited(types, missing) -> None:
    assert view.awaited(types) == missing


def test_resume_after_the_last_event_of_a_final_order_sends_only_final(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events:
        timeline.add(e)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, after_event_id=events[-1].event_id)
        await follower.open()
        return await collect(follower)

    got = run(main)
    assert [p.kind for p in got] == ["final"]


def test_redelivered_event_is_not_pushed_again(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    timeline.add(events[0])

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid)
        await follower.open()
        task = asyncio.create_task(collect(follower))
        for e in [events[1], events[0], events[1], *events[2:]]:  # at-least-once delivery
            await asyncio.to_thread(timeline.add, e)
        return await task

    assert events_of(run(main)) == [e.RECORD for e in events]


# -- unknown orders, pings, slow followers ---------------------------------------------------------------


def test_what_cannot_be_an_order_id_is_refused_at_once(timeline, hub) -> None:
    async def main() -> None:
        await Follower(hub, timeline.read, "no-such-order", unknown_wait_seconds=60).open()

    began = time.monotonic()
    with pytest.raises(UnknownOrder, match="order no-such-order not found"):
        run(main)
    assert time.monotonic() - began < 5 and hub.stats()["followers"] == 0


def test_unknown_order_is_refused_after_the_wait(timeline, hub) -> None:
    async def main() -> None:
        follower = Follower(hub, timeline.read, order_id(), unknown_wait_seconds=0.05)
        await follower.open()

    with pytest.raises(UnknownOrder, match="not found"):
        run(main)
    assert hub.stats()["followers"] == 0


def test_order_placed_through_another_instance_is_waited_for(timeline, hub) -> None:
    """This instance's consumer has not got the OrderPlaced yet when the client subscribes."""
    oid = order_id()
    events = happy_path(oid)

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, unknown_wait_seconds=5)
        opening = asyncio.create_task(follower.open())
        await asyncio.sleep(0.05)
        assert not opening.done()
        for e in events:
            await asyncio.to_thread(timeline.add, e)
        await opening
        return await collect(follower)

    assert events_of(run(main)) == [e.RECORD for e in events]


def test_idle_follower_gets_pings(timeline, hub) -> None:
    oid = order_id()
    timeline.add(placed(oid))

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, ping_seconds=0.01)
        await follower.open()
        return await collect(follower, until_final=False)

    got = run(main)
    assert events_of(got) == ["OrderPlaced"]
    assert got[-1] == PING and json.loads(PING.text) == {"type": "ping"}


def test_a_follower_that_falls_behind_is_cut_off_and_the_others_are_not(timeline) -> None:
    hub = PushHub(queue_limit=2)
    timeline.hub = hub
    oid = order_id()
    events = happy_path(oid)
    timeline.add(events[0])

    async def main() -> tuple[list[Push], list[Push]]:
        slow, fast = (Follower(hub, timeline.read, oid) for _ in range(2))
        await slow.open()
        await fast.open()
        fast_task = asyncio.create_task(collect(fast))
        slow_stream = slow.messages()
        first = await anext(slow_stream)  # the stored row; then it stops reading
        for e in events[1:]:
            await asyncio.to_thread(timeline.add, e)
        with pytest.raises(TooSlow, match="more than 2 events behind"):
            await anext(slow_stream)
        slow.close()
        return [first], await fast_task

    slow_got, fast_got = run(main)
    assert events_of(slow_got) == ["OrderPlaced"]
    assert events_of(fast_got) == [e.RECORD for e in events]
    assert hub.dropped == 1


def test_client_gone_ends_the_stream_and_unsubscribes(timeline, hub) -> None:
    oid = order_id()
    timeline.add(placed(oid))

    async def main() -> list[Push]:
        follower = Follower(hub, timeline.read, oid, ping_seconds=30)
        await follower.open()
        task = asyncio.create_task(collect(follower))
        await asyncio.sleep(0.02)
        assert hub.stats()["followers"] == 1
        follower.stop()
        got = await task
        follower.close()
        assert follower.client_gone
        return got

    assert [p.kind for p in run(main)] == ["event"]
    assert hub.stats()["followers"] == 0


def test_hub_close_ends_every_stream(timeline, hub) -> None:
    oid = order_id()
    timeline.add(placed(oid))

    async def main() -> list[list[Push]]:
        followers = [Follower(hub, timeline.read, oid, ping_seconds=30) for _ in range(3)]
        for f in followers:
            await f.open()
        tasks = [asyncio.create_task(collect(f)) for f in followers]
        await asyncio.sleep(0.02)
        hub.close()
        return list(await asyncio.gather(*tasks))

    assert all(events_of(got) == ["OrderPlaced"] for got in run(main))
    assert hub.closing


# -- the hub -------------------------------------------------------------------------------------------


def test_notify_without_followers_schedules_nothing(hub) -> None:
    oid = order_id()
    row = view.Stored(1, oid, "e1", "OrderPlaced", "{}")
    hub.notify_threadsafe(row)  # no loop known yet: nobody ever subscribed

    async def main() -> None:
        sub = hub.subscribe("someone-else")
        thread = threading.Thread(target=hub.notify_threadsafe, args=(row,))
        thread.start()
        thread.join()
        assert await sub.next(0.01) is None
        hub.unsubscribe(sub)

    run(main)


def test_many_followers_of_many_orders_each_get_their_own_orders_rows(hub) -> None:
    orders = [order_id() for _ in range(20)]

    async def main() -> list[tuple[list[int], list[int]]]:
        subs = [(oid, hub.subscribe(oid)) for oid in orders for _ in range(5)]
        stats = hub.stats()
        assert (stats["followers"], stats["orders_followed"], stats["dropped_slow"]) == (100, 20, 0)
        seq = 0
        for _ in range(3):
            for oid in orders:
                seq += 1
                await asyncio.to_thread(hub.notify_threadsafe, view.Stored(seq, oid, f"e{seq}", "X", "{}"))
        got = []
        for n, (oid, sub) in enumerate(subs):
            rows = [await sub.next(1) for _ in range(3)]
            assert all(r is not None and r.order_id == oid for r in rows)
            expected = [k * len(orders) + n // 5 + 1 for k in range(3)]
            got.append(([r.seq for r in rows if r is not None], expected))
            hub.unsubscribe(sub)
        return got

    for seqs, expected in run(main):
        assert seqs == expected
    assert hub.stats()["followers"] == 0


# -- the edges: WebSocket and SSE framing, close codes (in-process ASGI client) -------------------------


def client_for(hub: PushHub, timeline: Timeline, **settings: float) -> TestClient:
    options = {
        "ping_seconds": 30.0,
        "unknown_wait_seconds": 0.05,
        "final_wait_seconds": 0.0,
        "send_timeout": 5.0,
        **settings,
    }
    app = FastAPI()
    app.include_router(streams.router(hub, timeline.read, **options))
    return TestClient(app)


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_websocket_sends_stored_then_live_entries_then_final_and_closes_normally(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    timeline.add(events[0])
    with client_for(hub, timeline) as client, client.websocket_connect(f"/orders/{oid}/events") as ws:
        got = [json.loads(ws.receive_text())]
        for e in events[1:]:
            timeline.add(e)  # the consumer thread commits; the hub hands it to the socket's loop
            got.append(json.loads(ws.receive_text()))
        got.append(json.loads(ws.receive_text()))
        closing = ws.receive()
    assert [g["type"] for g in got] == [e.RECORD for e in events] + ["final"]
    assert [g["event_id"] for g in got[:-1]] == [e.event_id for e in events]
    assert got[-1] == {"type": "final", "order_id": oid, "status": "dispatched", "final": True}
    assert closing == {"type": "websocket.close", "code": 1000, "reason": "final"}
    lags = hub.stats()["push_lag_ms"]
    assert lags["n"] == 4 and 0 <= lags["p50"] <= lags["p99"] < 5000  # commit -> socket, live rows only


def test_websocket_resumes_after_the_given_event(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events:
        timeline.add(e)
    with (
        client_for(hub, timeline) as client,
        client.websocket_connect(f"/orders/{oid}/events?after={events[2].event_id}") as ws,
    ):
        got = [json.loads(ws.receive_text()) for _ in range(3)]
    assert [g.get("event_id") for g in got] == [events[3].event_id, events[4].event_id, None]
    assert got[-1]["final"] is True


def test_websocket_for_an_unknown_order_closes_with_4404(timeline, hub) -> None:
    with client_for(hub, timeline) as client, client.websocket_connect(f"/orders/{order_id()}/events") as ws:
        closing = ws.receive()
    assert closing["type"] == "websocket.close"
    assert closing["code"] == streams.UNKNOWN_ORDER == 4404
    assert "not found" in closing["reason"]


def test_websocket_heartbeat_when_idle(timeline, hub) -> None:
    oid = order_id()
    timeline.add(placed(oid))
    with (
        client_for(hub, timeline, ping_seconds=0.02) as client,
        client.websocket_connect(f"/orders/{oid}/events") as ws,
    ):
        assert json.loads(ws.receive_text())["type"] == "OrderPlaced"
        assert json.loads(ws.receive_text()) == {"type": "ping"}
        ws.close()
    assert hub.stats()["followers"] == 0


def sse_messages(body: str) -> list[dict[str, str]]:
    """Parse an event stream into its messages (fields by name; comments as {"comment": ...})."""
    messages = []
    for block in body.split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")
        messages.append(fields)
    return messages


def test_sse_streams_the_timeline_with_ids_then_final(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events[:2]:
        timeline.add(e)
    timer = later(0.2, lambda: [timeline.add(e) for e in events[2:]])
    with client_for(hub, timeline, ping_seconds=0.05) as client:
        response = client.get(f"/orders/{oid}/events", headers={"accept": "text/event-stream"})
    timer.join()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = sse_messages(response.text)
    assert messages[0] == {"retry": "1000"}
    entries = [m for m in messages if "data" in m]
    assert [m.get("id") for m in entries] == [e.event_id for e in events] + [None]
    assert [json.loads(m["data"])["type"] for m in entries] == [e.RECORD for e in events] + ["final"]
    assert {"comment": "ping"} in messages  # idle 0.2 s with pings every 0.05 s


def test_sse_resumes_after_last_event_id(timeline, hub) -> None:
    oid = order_id()
    events = happy_path(oid)
    for e in events:
        timeline.add(e)
    with client_for(hub, timeline) as client:
        response = client.get(
            f"/orders/{oid}/events", headers={"accept": "text/event-stream", "last-event-id": events[3].event_id}
        )
    entries = [m for m in sse_messages(response.text) if "data" in m]
    assert [m.get("id") for m in entries] == [events[4].event_id, None]


def test_sse_needs_the_event_stream_accept_header_and_a_known_order(timeline, hub) -> None:
    oid = order_id()
    timeline.add(placed(oid))
    with client_for(hub, timeline) as client:
        assert client.get(f"/orders/{oid}/events").status_code == 406
        unknown = client.get(f"/orders/{order_id()}/events", headers={"accept": "text/event-stream"})
    assert unknown.status_code == 404
    assert "not found" in unknown.json()["detail"]
    assert hub.stats()["followers"] == 0


def test_websocket_client_leaving_during_the_unknown_order_wait_ends_it_at_once(timeline, hub) -> None:
    with client_for(hub, timeline, unknown_wait_seconds=60) as client:
        with client.websocket_connect(f"/orders/{order_id()}/events"):
            eventually(lambda: hub.stats()["followers"] == 1, timeout=5)
        eventually(lambda: hub.stats()["followers"] == 0, timeout=5)  # not after 60 s
