"""The fault-injection harness: drive real orders through the running system while breaking it, then count.

Used by tests/faults (pytest -m faults). Every check reads what the system itself recorded: the order
timelines over HTTP, the services' SQLite state (native runtime), and the topics' offsets.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from eventshop_tools import stack
from eventshop_tools.replay import load_orders

DOWNSTREAM = ("accounting", "inventory", "shipping")
FINAL = {"ShipmentDispatched": "dispatched", "ShipmentCancelled": "cancelled"}
RESULTS = stack.RUN / "faults" / "results.json"


@dataclass
class Outcome:
    scenario: str
    orders: int = 0  # accepted (202)
    lost: int = 0  # accepted, but not in exactly one final state
    duplicated_effects: int = 0
    redeliveries: int = 0
    dead_lettered: int = 0
    recovery_seconds: float = 0.0
    proof: str = ""  # what shows the fault really landed
    notes: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        results[self.scenario] = asdict(self)
        RESULTS.write_text(json.dumps(results, indent=2))


def table(results: Iterable[dict[str, Any]]) -> str:
    head = (
        "| scenario | orders | lost | duplicated effects | redeliveries | dead-lettered | recovery s | fault landed |"
    )
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        rows.append(
            f"| {r['scenario']} | {r['orders']} | {r['lost']} | {r['duplicated_effects']} | {r['redeliveries']} "
            f"| {r['dead_lettered']} | {r['recovery_seconds']:.1f} | {r.get('proof', '')} |"
        )
    return "\n".join(rows)


# -- load ------------------------------------------------------------------------------------------
def real_bodies(data: Path, count: int) -> list[dict[str, Any]]:
    orders, _ = load_orders(data, limit=int(count * 1.6) + 50)
    if len(orders) < count:
        raise ValueError(f"only {len(orders)} real orders in the first invoices of {data}")
    return [o.body() for o in orders[:count]]


@dataclass
class Sent:
    accepted: dict[str, str] = field(default_factory=dict)  # idempotency key -> order_id
    answers: Counter[int] = field(default_factory=Counter)  # status code -> count (every attempt)
    transport_errors: int = 0
    retries: int = 0


async def send_orders(
    url: str,
    bodies: list[dict[str, Any]],
    prefix: str,
    concurrency: int = 16,
    deadline_s: float = 240,
    rate: float | None = None,
) -> Sent:
    """POST every body with its own Idempotency-Key; retry 503s and dropped connections like a real client
    would (the key makes it safe) until each gets a final answer or the deadline passes. With `rate`, order
    i is not sent before i / rate seconds, so the load lasts long enough to meet a fault."""
    sent = Sent()
    queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
    for i, body in enumerate(bodies):
        queue.put_nowait((i, body))
    began = time.monotonic()
    stop_at = began + deadline_s

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i, body = queue.get_nowait()
            key = f"{prefix}-{i}"
            if rate is not None:
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            delay = 0.2
            while time.monotonic() < stop_at:
                try:
                    response = await client.post("/orders", json=body, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    sent.transport_errors += 1
                else:
                    sent.answers[response.status_code] += 1
                    if response.status_code == 202:
                        sent.accepted[key] = response.json()["order_id"]
                        break
                    if response.status_code < 500:
                        break  # a 4xx is a final answer
                sent.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return sent


# -- faults ----------------------------------------------------------------------------------------
def kill9(name: str) -> None:
    """SIGKILL the component's process group: no shutdown hook runs, nothing is flushed or committed."""
    comp = stack.component(name)
    pid = comp.pid()
    if pid is None:
        raise RuntimeError(f"{name} is not running")
    os.killpg(pid, signal.SIGKILL)
    stack.wait_gone(pid)
    stack.stop(comp)  # removes the pid file
    # The restart that follows checks that the ports are free: give the dead process's sockets time to close.
    deadline = time.monotonic() + 10
    while any(stack.port_open(port) for port in comp.ports) and time.monotonic() < deadline:
        time.sleep(0.1)


async def restart(name: str, kill: bool = True) -> None:
    if kill:
        kill9(name)
    else:
        await asyncio.to_thread(stack.stop, stack.component(name))
    await asyncio.to_thread(stack.start, stack.component(name))


async def at_random_moments(
    rng: random.Random, actions: list[Callable[[], Awaitable[None]]], gap: tuple[float, float]
) -> float:
    """Run the actions one after another with random pauses; the monotonic time the last one ended."""
    for action in actions:
        await asyncio.sleep(rng.uniform(*gap))
        await action()
    return time.monotonic()


# -- checks ----------------------------------------------------------------------------------------
async def wait_final(url: str, order_ids: list[str], timeout: float = 240) -> dict[str, dict[str, Any]]:
    """Poll until every order is final or the timeout passes; the last view of each order."""
    views: dict[str, dict[str, Any]] = {}
    pending = set(order_ids)
    stop_at = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        sem = asyncio.Semaphore(16)

        async def fetch(order_id: str) -> None:
            async with sem:
                try:
                    response = await client.get(f"/orders/{order_id}")
                except httpx.TransportError:
                    return
            if response.status_code == 200:
                views[order_id] = response.json()
                if views[order_id]["status"] != "pending":
                    pending.discard(order_id)

        while pending and time.monotonic() < stop_at:
            await asyncio.gather(*(fetch(o) for o in list(pending)))
            if pending:
                await asyncio.sleep(0.5)
    return views


def count_lost_and_duplicated(order_ids: list[str], views: dict[str, dict[str, Any]]) -> tuple[int, int]:
    lost = duplicated = 0
    for order_id in order_ids:
        timeline = views.get(order_id, {}).get("timeline", [])
        finals = [e for e in timeline if e["type"] in FINAL]
        if len(finals) != 1 or views[order_id]["status"] != FINAL[finals[0]["type"]]:
            lost += 1
        ids_per_type = Counter(e["type"] for e in timeline)
        duplicated += sum(n - 1 for n in ids_per_type.values() if n > 1)
    return lost, duplicated


def state_db(service: str) -> sqlite3.Connection:
    return sqlite3.connect(stack.RUN / "state" / f"{service}.db")


def ledger_mismatches(order_ids: list[str], views: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """Ledger rows per order against what the order's events say (one charge per capture, one refund per
    refund, same amounts): (rows beyond the events, events without their row)."""
    with state_db("accounting") as db:
        rows = db.execute(
            "select order_id, kind, amount from ledger where order_id in (select value from json_each(?))",
            (json.dumps(order_ids),),
        ).fetchall()
    ledger = Counter((o, k, Decimal(a)) for o, k, a in rows)
    expected: Counter[tuple[str, str, Decimal]] = Counter()
    for order_id in order_ids:
        for e in views.get(order_id, {}).get("timeline", []):
            if e["type"] == "PaymentCaptured":
                expected[(order_id, "charge", Decimal(e["amount"]))] += 1
            elif e["type"] == "PaymentRefunded":
                expected[(order_id, "refund", Decimal(e["amount"]))] += 1
    return sum((ledger - expected).values()), sum((expected - ledger).values())


def stock_violations() -> int:
    """Every SKU: on_hand = initial - reserved + released, i.e. initial minus what open reservations hold."""
    with state_db("inventory") as db:
        db.execute("begin")  # one snapshot for both tables
        stock = {sku: (initial, on_hand) for sku, initial, on_hand in db.execute("select * from stock")}
        held: Counter[str] = Counter()
        for (data,) in db.execute("select data from reservations"):
            reservation = json.loads(data)
            if reservation["status"] == "reserved":
                for sku, qty in reservation["lines"]:
                    held[sku] += qty
        db.execute("commit")
    return sum(1 for sku, (initial, on_hand) in stock.items() if on_hand != initial - held[sku] or on_hand < 0)


def redeliveries() -> int:
    total = 0
    for service in DOWNSTREAM:
        with state_db(service) as db:
            total += db.execute("select n from inbox_stats where name = 'redeliveries'").fetchone()[0]
    return total


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-offsets"})
    try:
        ends = {}
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends[topic] = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
            )
        return ends
    finally:
        consumer.close()


def caught_up(bootstrap: str, group: str, topics: Iterable[str]) -> bool:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            tps = [TopicPartition(topic, p) for p in partitions]
            for tp in consumer.committed(tps, timeout=10):
                if tp.offset < consumer.get_watermark_offsets(tp, timeout=10)[1]:
                    return False
        return True
    finally:
        consumer.close()


@dataclass(frozen=True)
class DeadLetterRecord:
    key: str | None
    headers: dict[str, str]

    @property
    def origin(self) -> tuple[str, str, str, str]:
        h = self.headers
        return (h.get("dlq.original.topic", ""), h.get("dlq.original.partition", ""),
                h.get("dlq.original.offset", ""), h.get("dlq.service", ""))  # fmt: skip


def partition_ends(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-offsets"})
    try:
        return {
            (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        }
    finally:
        consumer.close()


def records_since(bootstrap: str, starts: dict[tuple[str, int], int]) -> list[DeadLetterRecord]:
    """Every record from the given offsets up to the current end of each partition."""
    ends = partition_ends(bootstrap, {t for t, _ in starts})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "faults-reader", "enable.auto.commit": False})
    records = []
    try:
        for (topic, p), start in starts.items():
            end = ends.get((topic, p), start)
            if end <= start:
                continue
            consumer.assign([TopicPartition(topic, p, start)])
            while True:
                msg = consumer.poll(10)
                if msg is None:
                    raise AssertionError(f"{topic}[{p}] stopped before offset {end}")
                if msg.error():
                    continue
                key = msg.key()
                raw: list[tuple[str, bytes]] = list(msg.headers() or [])  # type: ignore[arg-type]
                headers = {k: (v or b"").decode(errors="replace") for k, v in raw}
                records.append(DeadLetterRecord(key.decode(errors="replace") if key else None, headers))
                if (msg.offset() or 0) + 1 >= end:
                    break
    finally:
        consumer.close()
    return records
