"""Pushing an order's progress after the 202: WebSocket and SSE against the running order service, and a
second order-service instance (its own consumer group and store) started here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from confluent_kafka import Consumer, KafkaException, TopicPartition

from eventkit.catalogue import Catalogue
from eventshop_tools.testing import Infra, eventually, order_body

FINAL = {"dispatched", "cancelled"}


@dataclass
class Followed:
    """What one client got: timeline entries in order, the final message, how the stream ended."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    pings: int = 0
    close_code: int | None = None
    close_reason: str = ""

    @property
    def ids(self) -> list[str]:
        return [e["event_id"] for e in self.entries]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.entries]


def ws_url(base: str, order_id: str, after: str | None = None) -> str:
    query = f"?after={after}" if after else ""
    return base.replace("http://", "ws://", 1) + f"/orders/{order_id}/events{query}"


async def follow_ws_async(base: str, order_id: str, after: str | None = None, take: int | None = None) -> Followed:
    """Follow over a WebSocket until the server closes it (or, with `take`, leave after that many entries)."""
    got = Followed()
    async with websockets.connect(ws_url(base, order_id, after), open_timeout=10) as ws:
        try:
            async with asyncio.timeout(90):
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] == "ping":
                        got.pings += 1
                    elif message.get("final"):
                        got.final = message
                    else:
                        assert got.final is None, "nothing may follow the final message"
                        got.entries.append(message)
                        if take is not None and len(got.entries) == take:
                            break
        except websockets.ConnectionClosed:
            pass
        got.close_code, got.close_reason = ws.close_code, ws.close_reason or ""
    return got


def follow_ws(base: str, order_id: str, after: str | None = None, take: int | None = None) -> Followed:
    return asyncio.run(follow_ws_async(base, order_id, after, take))


def follow_sse(base: str, order_id: str, last_event_id: str | None = None, take: int | None = None) -> Followed:
    got = Followed()
    headers = {"accept": "text/event-stream", **({"last-event-id": last_event_id} if last_event_id else {})}
    with httpx.stream("GET", f"{base}/orders/{order_id}/events", headers=headers, timeout=90) as response:
        assert response.status_code == 200, response.read()
        event_id = None
        for line in response.iter_lines():
            if line == ": ping":
                got.pings += 1
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                message = json.loads(line[6:])
                if message.get("final"):
                    got.final = message
                else:
                    assert got.final is None, "nothing may follow the final message"
                    assert message["event_id"] == event_id, "each entry's SSE id is its event id"
                    got.entries.append(message)
                    if take is not None and len(got.entries) == take:
                        break
            elif line == "":
                event_id = None
    return got


def timeline_ids(api: httpx.Client, order_id: str) -> set[str]:
    return {e["event_id"] for e in api.get(f"/orders/{order_id}").json()["timeline"]}


def assert_whole_stream(live: Followed, replay: Followed, view: dict[str, Any]) -> None:
    """`live` followed from the 202; `replay` followed after the end. Same entries, same (arrival) order,
    each once, the whole timeline (a cancellation's compensations included), then the view's status."""
    assert len(set(live.ids)) == len(live.ids), "no duplicates"
    assert live.ids == replay.ids, "live order is the stored order, with no gaps"
    assert set(live.ids) == {e["event_id"] for e in view["timeline"]}, "the whole timeline"
    assert "OrderPlaced" in live.types  # arrival order: first, unless the view lags on orders.placed
    assert live.final == replay.final == {"type": "final", "order_id": view["order_id"], "status": view["status"],
                                          "final": True}  # fmt: skip
    for entry in live.entries:
        assert entry["event_id"] and entry["occurred_at"] and entry["type"]


# -- one instance (the running order service) -----------------------------------------------------------


def test_websocket_from_the_202_to_final_delivers_the_whole_timeline(infra, order_api, place, wait_final, sku, unique):
    order_id = place(order_body(f"c-{unique}", (sku(), 2, "3.25")))
    live = follow_ws(infra.order_url, order_id)
    view = wait_final(order_id)
    assert live.close_code == 1000 and live.close_reason == "final"
    assert view["status"] == "dispatched"
    assert {"OrderPlaced", "PaymentCaptured", "StockReserved", "ShipmentScheduled", "ShipmentDispatched"} <= set(
        live.types
    )
    assert_whole_stream(live, follow_ws(infra.order_url, order_id), view)


def test_sse_from_the_202_to_final_delivers_the_whole_timeline(infra, order_api, place, wait_final, sku, unique):
    # 100 x 60.001 GBP is over the credit limit: declined, cancelled.
    order_id = place(order_body(f"c-{unique}", (sku(), 100, "60.001")))
    live = follow_sse(infra.order_url, order_id)
    view = wait_final(order_id, require=("StockReleased",))
    assert view["status"] == "cancelled"
    assert {"OrderPlaced", "PaymentDeclined", "ShipmentCancelled", "StockReleased"} <= set(live.types)
    assert_whole_stream(live, follow_sse(infra.order_url, order_id), view)


def test_events_stored_before_the_client_came_are_sent_first(infra, order_api, place, wait_final, sku, unique):
    order_id = place(order_body(f"c-{unique}", (sku(), 1, "9.99")))
    before = eventually(lambda: ids if len(ids := timeline_ids(order_api, order_id)) >= 2 else None)
    ws, sse = follow_ws(infra.order_url, order_id), follow_sse(infra.order_url, order_id)
    view = wait_final(order_id)
    assert set(ws.ids[: len(before)]) == before  # type: ignore[arg-type]
    assert ws.ids == sse.ids and ws.final == sse.final
    assert_whole_stream(ws, follow_ws(infra.order_url, order_id), view)


def test_reconnecting_with_the_last_seen_id_resumes_without_gaps(infra, order_api, place, wait_final, sku, unique):
    order_id = place(order_body(f"c-{unique}", (sku(), 4, "0.85")))
    first = follow_ws(infra.order_url, order_id, take=2)  # then the client drops
    rest = follow_ws(infra.order_url, order_id, after=first.ids[-1])
    sse_first = follow_sse(infra.order_url, order_id, take=3)
    sse_rest = follow_sse(infra.order_url, order_id, last_event_id=sse_first.ids[-1])
    view = wait_final(order_id)
    whole = follow_ws(infra.order_url, order_id)
    assert first.ids + rest.ids == whole.ids == sse_first.ids + sse_rest.ids
    assert rest.final == sse_rest.final == whole.final
    assert set(whole.ids) == {e["event_id"] for e in view["timeline"]}


def test_unknown_order_and_wrong_accept_are_refused_with_a_reason(infra, order_api):
    # Not an order id (not a UUID): refused at once. (An unknown UUID is waited for, PUSH_UNKNOWN_WAIT_SECONDS:
    # the unit tests cover that.)
    unknown = follow_ws(infra.order_url, "no-such-order")
    assert unknown.close_code == 4404 and unknown.close_reason == "order no-such-order not found"
    assert not unknown.entries and unknown.final is None
    sse = order_api.get("/orders/no-such-order/events", headers={"accept": "text/event-stream"})
    assert sse.status_code == 404 and "not found" in sse.json()["detail"]
    assert order_api.get("/orders/00000000-0000-0000-0000-000000000000/events").status_code == 406


# -- two instances -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def order_partitions(catalogue: Catalogue) -> list[TopicPartition]:
    pattern = re.compile(catalogue.order_events_pattern)
    return [TopicPartition(t.name, p) for t in catalogue.topics if pattern.match(t.name) for p in range(t.partitions)]


def start_group_at_the_end(infra: Infra, catalogue: Catalogue, group: str) -> None:
    """Commit `group`'s offsets at the end of every order topic: an instance of that group skips the history
    (which this test doesn't need, and which can be long on a shared broker) and reads from now on."""
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": group})  # never joins
    try:
        ends = [TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=10)[1])
                for tp in order_partitions(catalogue)]  # fmt: skip
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def view_lag(infra: Infra, catalogue: Catalogue, group: str) -> int:
    """Order events the consumer group has not committed yet, over every partition of every order topic."""
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": group})  # never joins
    try:
        lag = 0
        for tp in consumer.committed(order_partitions(catalogue), timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    except KafkaException:  # the broker is busy or restarting: not known to be caught up
        return sys.maxsize
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def second_instance(infra: Infra, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Another order-service process: its own consumer group (INSTANCE_ID), its own store and port, reading
    the order topics from their current end; yielded once it has caught up (as behind a load balancer)."""
    port, state, instance = free_port(), tmp_path_factory.mktemp("order-b"), f"t-{os.urandom(4).hex()}"
    start_group_at_the_end(infra, catalogue, f"order-view-{instance}")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "SCHEMA_REGISTRY_URL": infra.registry_url,
        "STATE_DIR": str(state),
        "PORT": str(port),
        "INSTANCE_ID": instance,
    }
    log = (state / "order-b.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "order_service"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: proc.poll() is not None or _healthy(url), timeout=60)
        assert proc.poll() is None, Path(log.name).read_text()[-2000:]
        # Others may be producing meanwhile, so "caught up" is "nearly".
        eventually(lambda: view_lag(infra, catalogue, f"order-view-{instance}") <= 20, timeout=180, interval=1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_instances_both_push_every_event(infra, second_instance, order_api, wait_final, sku, unique):
    one, two = infra.order_url, second_instance
    with httpx.Client(base_url=two, timeout=30) as api_two:
        placed = {}
        for name, api in (("via-one", order_api), ("via-two", api_two)):
            response = api.post("/orders", json=order_body(f"c-{unique}-{name}", (sku(), 3, "1.10")))
            assert response.status_code == 202, response.text
            placed[name] = response.json()["order_id"]

        async def follow_all() -> list[Followed]:
            return await asyncio.gather(*(follow_ws_async(base, oid) for oid in placed.values() for base in (one, two)))

        streams = asyncio.run(follow_all())
        for n, order_id in enumerate(placed.values()):
            on_one, on_two = streams[2 * n], streams[2 * n + 1]
            view_one = wait_final(order_id)
            view_two = eventually(lambda oid=order_id: (v := api_two.get(f"/orders/{oid}").json())["status"] in FINAL
                                  and v)  # fmt: skip
            assert view_one["status"] == view_two["status"] == "dispatched"  # type: ignore[index]
            assert_whole_stream(on_one, follow_ws(one, order_id), view_one)
            assert_whole_stream(on_two, follow_ws(two, order_id), view_two)  # type: ignore[arg-type]
            assert set(on_one.ids) == set(on_two.ids)
    health = httpx.get(f"{two}/health").json()
    assert health["push"]["followers"] == 0
