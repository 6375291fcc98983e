"""Fault injection on the running system (pytest -m faults): break it while real orders flow, then count.

After every scenario: each accepted order is in exactly one final state, the ledger matches the payment
events, stock = initial - reserved + released, the dead-letter topics hold exactly the injected poison, and
redeliveries really happened (proof the fault landed). Figures go to .run/faults/results.json and the table
printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import struct
import time
import uuid
from collections import Counter

import httpx
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_writer

from accounting_service import domain as accounting_domain
from eventshop_tools import faults, stack
from eventshop_tools.faults import Outcome
from eventshop_tools.replay import default_data
from eventshop_tools.testing import eventually
from inventory_service import domain as inventory_domain
from shipping_service import domain as shipping_domain

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]
# consumer group -> the record types it consumes (each service's own CONSUMES)
CONSUMES = {
    "accounting": {cls.RECORD for cls in accounting_domain.CONSUMES},
    "inventory": {cls.RECORD for cls in inventory_domain.CONSUMES},
    "shipping": {cls.RECORD for cls in shipping_domain.CONSUMES},
}
DATA = default_data()
ORDER_URL = "http://127.0.0.1:8000"
# Every service that consumes orders.placed dead-letters a poison record itself (the Faust recommend
# worker too, when it is installed).
CONSUMERS_OF_PLACED = ("accounting", "inventory", "shipping", "order") + (
    ("recommend",) if any(c.name == "recommend-worker" for c in stack.installed_services()) else ()
)
SERVICES = {*CONSUMERS_OF_PLACED}


@pytest.fixture(scope="module")
def native(infra):
    if infra.how != "native":
        pytest.skip("fault injection kills and restarts local processes: native runtime only")
    faults.RESULTS.unlink(missing_ok=True)
    return infra


@pytest.fixture(autouse=True)
def whole_system(native) -> None:
    """Each scenario starts with every component running, so one that failed leaves no victim down for
    the next (what had to be started is said in the output)."""
    restarted = [comp.name for comp in stack.up()]
    if restarted:
        print(f"fault suite: restarted {restarted} left down by an earlier scenario")


@pytest.fixture(scope="module")
def bodies(native) -> list[dict]:
    assert DATA.exists(), f"the real data is needed: {DATA}"
    return faults.real_bodies(DATA, 2000)


def dead_letters_since(infra, before: dict, keys: set[str]) -> list[faults.DeadLetterRecord]:
    """The dead letters written since `before` about these keys (other tests' poison is not ours)."""
    return [r for r in faults.records_since(infra.bootstrap_servers, before["dlq"]) if r.key in keys]


def finish(
    name: str, sent: faults.Sent, fault_ended: float, infra, catalogue, before: dict, poison: set[str] = frozenset()
) -> Outcome:
    """Wait for every accepted order to be final, then count and record."""
    order_ids = sorted(set(sent.accepted.values()))
    asyncio.run(faults.wait_final(ORDER_URL, order_ids, timeout=240))
    recovery = max(0.0, time.monotonic() - fault_ended)
    # Final is not the end: refunds and releases follow a cancellation. Count once everyone caught up.
    wait_caught_up(infra, catalogue)
    views = asyncio.run(faults.wait_final(ORDER_URL, order_ids, timeout=60))
    lost, duplicated = faults.count_lost_and_duplicated(order_ids, views)
    extra_rows, missing_rows = faults.ledger_mismatches(order_ids, views)
    outcome = Outcome(
        scenario=name,
        orders=len(order_ids),
        lost=lost + missing_rows,
        duplicated_effects=duplicated + extra_rows + faults.stock_violations(),
        redeliveries=faults.redeliveries() - before["redeliveries"],
        dead_lettered=len(dead_letters_since(infra, before, set(order_ids) | poison)),
        recovery_seconds=recovery,
        notes={
            "answers": dict(sent.answers),
            "transport_errors": sent.transport_errors,
            "retries": sent.retries,
            "final": dict(Counter(v["status"] for v in views.values())),
        },
    )
    outcome.save()
    return outcome


def wait_caught_up(infra, catalogue) -> None:
    for group, consumed in CONSUMES.items():
        topics = [s.name for s in catalogue.topics if s.value in consumed]
        eventually(lambda g=group, t=topics: faults.caught_up(infra.bootstrap_servers, g, t), timeout=120)


def baseline(infra, catalogue) -> dict:
    dlq_topics = [s.name for s in catalogue.dead_letter_specs()]
    return {"redeliveries": faults.redeliveries(), "dlq": faults.partition_ends(infra.bootstrap_servers, dlq_topics)}


def run_with_faults(bodies, prefix, actions, gap=(0.5, 2.0), seed=7, rate=None):
    async def main():
        load = asyncio.create_task(faults.send_orders(ORDER_URL, bodies, prefix, rate=rate))
        ended = await faults.at_random_moments(random.Random(seed), actions, gap)
        return await load, ended

    return asyncio.run(main())


def test_a_kill_9_consumers_at_random_moments(native, catalogue, bodies, unique) -> None:
    before = baseline(native, catalogue)
    rng = random.Random(11)
    victims = [svc for _ in range(3) for svc in rng.sample(faults.DOWNSTREAM, 3)]
    sent, ended = run_with_faults(bodies, f"a-{unique}", [lambda v=v: faults.restart(v) for v in victims], rate=150)
    out = finish("a: kill -9 consumers x3", sent, ended, native, catalogue, before)
    out.proof = f"{len(victims)} kills; {out.redeliveries} events redelivered"
    out.save()
    assert out.orders == len(bodies)
    assert (out.lost, out.duplicated_effects, out.dead_lettered) == (0, 0, 0), out
    assert out.redeliveries > 0, "no redelivery: the kills did not land mid-batch"


def test_b_kill_9_order_service_while_clients_retry(native, catalogue, bodies, unique) -> None:
    before = baseline(native, catalogue)
    sent, ended = run_with_faults(
        bodies, f"b-{unique}", [lambda: faults.restart("order"), lambda: faults.restart("order")], (2.0, 4.0), rate=150
    )

    out = finish("b: kill -9 order API, clients retry", sent, ended, native, catalogue, before)
    out.proof = f"2 kills; {sent.transport_errors} dropped requests retried with their key"
    out.save()
    assert out.orders == len(bodies), "every order was eventually accepted (same Idempotency-Key)"
    assert sent.transport_errors > 0, "the kill did not land while requests were in flight"
    assert (out.lost, out.duplicated_effects, out.dead_lettered) == (0, 0, 0), out


def test_c_broker_restart_mid_load_answers_503_never_a_false_202(native, catalogue, bodies, unique) -> None:
    before = baseline(native, catalogue)

    async def broker_outage():
        await asyncio.to_thread(stack.stop, stack.component("kafka"))
        # Down for longer than the order API's delivery timeout (10 s): shorter outages are absorbed by the
        # producer's retries and every request still gets its 202.
        await asyncio.sleep(12)
        await asyncio.to_thread(stack.start, stack.component("kafka"))

    # 2,000 orders over 16 s: the outage (from about 1 s in) always meets the load.
    sent, ended = run_with_faults(bodies, f"c-{unique}", [broker_outage], gap=(1.0, 1.5), rate=125)
    out = finish("c: broker restart mid-load", sent, ended, native, catalogue, before)
    out.proof = f"{sent.answers[503]} answers 503 while down; {out.redeliveries} events redelivered"
    out.save()
    assert sent.answers[503] > 0, "no 503 seen: the outage did not overlap the load"
    assert out.orders == len(bodies)
    # Every 202 has its OrderPlaced in the log (a false 202 would be lost here).
    assert (out.lost, out.duplicated_effects, out.dead_lettered) == (0, 0, 0), out


def _poison_values(infra, catalogue) -> dict[str, bytes | None]:
    registry = SchemaRegistryClient({"url": infra.registry_url})
    placed = catalogue.topic_for("OrderPlaced")
    schema_id = registry.get_latest_version(placed.subject).schema_id
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(catalogue.schema("OrderPlaced")), {
        "event_id": str(uuid.uuid4()), "occurred_at": 0, "order_id": str(uuid.uuid4()), "customer_id": "x",
        "currency": "GBP", "country": None, "placed_at": 0, "items": []})  # fmt: skip
    valid_but_invalid = b"\x00" + struct.pack(">I", schema_id) + buf.getvalue()
    return {
        "wrong-magic": b"\x01" + valid_but_invalid[1:],
        "unknown-schema-id": b"\x00" + struct.pack(">I", 2_000_000_000) + buf.getvalue(),
        "truncated": valid_but_invalid[:9],
        "not-avro": b'{"order_id": "not avro at all"}',
        "order-without-lines": valid_but_invalid,
        "tombstone": None,
    }


def _order(line: dict | None = None, **over: object) -> bytes:
    items = [{"sku": "A", "quantity": 1, "unit_price": "1", **(line or {})}]
    return json.dumps({"customer_id": "c", "currency": "GBP", "items": items, **over}).encode()


BAD_HTTP = [
    b"{not json",
    b"[]",
    _order(items=[]),
    _order(currency="USD"),
    _order(line={"quantity": -1}),
    _order(line={"unit_price": "0.0001"}),
    _order(coupon="FREE"),
    b'{"customer_id": "c", "currency": "GBP", "items": [' + b'{"sku": "A", "quantity": 1},' * 60_000 + b"]}",
]


def test_d_bad_inputs_at_the_edge_and_in_topics(native, catalogue, bodies, unique) -> None:
    before = baseline(native, catalogue)
    poison = _poison_values(native, catalogue)
    producer = Producer({"bootstrap.servers": native.bootstrap_servers, "acks": "all"})
    placed = catalogue.topic_for("OrderPlaced").name
    captured = catalogue.topic_for("PaymentCaptured").name
    expected: Counter[tuple[str, str]] = Counter()  # (key, service that must dead-letter it)
    for i in range(5):
        for kind, value in poison.items():
            key = f"poison-{unique}-{kind}-{i}"
            producer.produce(placed, key=key, value=value)
            expected.update((key, svc) for svc in CONSUMERS_OF_PLACED)
        key = f"poison-{unique}-captured-{i}"
        producer.produce(captured, key=key, value=poison["wrong-magic"])
        expected.update((key, svc) for svc in ("shipping", "order"))
    assert producer.flush(10) == 0
    injected = len({key for key, _ in expected})

    statuses = []
    with httpx.Client(base_url=ORDER_URL, timeout=30) as client:
        for _ in range(13):
            for raw in BAD_HTTP:
                answer = client.post("/orders", content=raw, headers={"content-type": "application/json"})
                statuses.append(answer.status_code)
    assert len(statuses) + injected >= 120 and len(BAD_HTTP) + len(poison) >= 6
    assert all(400 <= s < 500 for s in statuses), Counter(statuses)

    sent, ended = run_with_faults(bodies[:500], f"d-{unique}", [], gap=(0, 0))
    keys = {key for key, _ in expected}

    def ours() -> list[faults.DeadLetterRecord]:
        return [r for r in dead_letters_since(native, before, keys) if r.headers.get("dlq.service") in SERVICES]

    eventually(lambda: len(ours()) >= expected.total(), timeout=90, interval=1)
    out = finish("d: bad inputs at the edge and in topics", sent, ended, native, catalogue, before, keys)
    out.notes.update(http_4xx=len(statuses), http_kinds=len(BAD_HTTP), topic_poison=injected, topic_kinds=len(poison))
    out.proof = (
        f"{len(statuses)} bad requests ({len(BAD_HTTP)} kinds) all 4xx; {injected} poison records "
        f"({len(poison)} kinds) dead-lettered by each consumer"
    )
    out.save()
    records = ours()
    assert Counter((r.key, r.headers["dlq.service"]) for r in records) == expected, "exactly the injected poison"
    for r in records:
        assert r.headers["dlq.error.class"] == "DeserializationError" and r.headers["dlq.error.message"], r
    assert (out.lost, out.duplicated_effects) == (0, 0), out


def test_e_duplicate_ten_percent_of_deliveries(native, catalogue, bodies, unique) -> None:
    before = baseline(native, catalogue)
    order_topics = [s.name for s in catalogue.topics if s.name.startswith("orders.")]
    start = faults.end_offsets(native.bootstrap_servers, order_topics)
    sent, ended = run_with_faults(bodies[:500], f"e-{unique}", [], gap=(0, 0))
    order_ids = set(sent.accepted.values())
    asyncio.run(faults.wait_final(ORDER_URL, sorted(order_ids)))
    duplicated = duplicate_records(native, order_topics, start, order_ids, share=0.10, seed=5)
    ended = time.monotonic()
    out = finish("e: 10% of deliveries duplicated", sent, ended, native, catalogue, before)
    out.notes.update(duplicated_records=duplicated)
    out.proof = f"{duplicated} records produced twice; {out.redeliveries} redeliveries absorbed"
    out.save()
    assert duplicated >= len(order_ids) * 0.5  # ~10% of ~5 records per order
    assert out.redeliveries > 0
    assert (out.lost, out.duplicated_effects, out.dead_lettered) == (0, 0, 0), out


def duplicate_records(infra, topics, start, order_ids, share, seed) -> int:
    rng = random.Random(seed)
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}"})
    producer = Producer({"bootstrap.servers": infra.bootstrap_servers, "acks": "all"})
    count = 0
    try:
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                tp = TopicPartition(topic, p)
                low, high = consumer.get_watermark_offsets(tp, timeout=10)
                first = max(low, high - 5000)
                if high == first:
                    continue
                consumer.assign([TopicPartition(topic, p, first)])
                while True:
                    msg = consumer.poll(5)
                    assert msg is not None
                    if msg.key() and msg.key().decode() in order_ids and rng.random() < share:
                        producer.produce(topic, key=msg.key(), value=msg.value(), headers=msg.headers(), partition=p)
                        count += 1
                    if msg.offset() + 1 >= high:
                        break
        assert producer.flush(10) == 0
    finally:
        consumer.close()
    return count


def test_f_reset_consumer_groups_to_earliest_and_replay(native, catalogue, unique) -> None:
    before = baseline(native, catalogue)
    output_topics = [s.name for s in catalogue.topics if s.producer in faults.DOWNSTREAM]
    outputs_before = faults.end_offsets(native.bootstrap_servers, output_topics)
    snapshot_before = state_snapshot()
    admin = AdminClient({"bootstrap.servers": native.bootstrap_servers})
    subscriptions = {
        svc: [s.name for s in catalogue.topics if s.value in consumed] for svc, consumed in CONSUMES.items()
    }
    began = time.monotonic()
    for svc, topics in subscriptions.items():
        stack.stop(stack.component(svc))
        reset_to_earliest(admin, native, svc, topics)
        stack.start(stack.component(svc))
    for svc, topics in subscriptions.items():
        eventually(lambda s=svc, t=topics: faults.caught_up(native.bootstrap_servers, s, t), timeout=240, interval=1)
    outputs_after = faults.end_offsets(native.bootstrap_servers, output_topics)
    # A replay meets old poison again and dead-letters it again; only a record never dead-lettered is new.
    known = {r.origin for r in faults.records_since(native.bootstrap_servers, dict.fromkeys(before["dlq"], 0))}
    again = faults.records_since(native.bootstrap_servers, before["dlq"])
    fresh = [r for r in again if r.origin not in known]
    changed_tables = sum(state_snapshot()[k] != v for k, v in snapshot_before.items())
    out = Outcome(
        scenario="f: groups reset to earliest, full replay",
        orders=len(snapshot_before["payments"]),
        lost=0,
        duplicated_effects=changed_tables + sum(outputs_after[t] - outputs_before[t] for t in output_topics),
        redeliveries=faults.redeliveries() - before["redeliveries"],
        dead_lettered=len(fresh),
        recovery_seconds=time.monotonic() - began,
    )
    out.notes.update(poison_dead_lettered_again=len(again) - len(fresh))
    out.proof = f"{out.redeliveries} events replayed; 0 new output records; known poison met again: {len(again)}"
    out.save()
    assert out.redeliveries > 0
    assert (out.duplicated_effects, out.dead_lettered) == (0, 0), out


def reset_to_earliest(admin: AdminClient, infra, group: str, topics: list[str]) -> None:
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": "t-meta"})
    try:
        tps = [
            TopicPartition(t, p, consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[0])
            for t in topics
            for p in consumer.list_topics(t, timeout=10).topics[t].partitions
        ]
    finally:
        consumer.close()
    for future in admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)]).values():
        future.result()


def state_snapshot() -> dict[str, list]:
    with faults.state_db("accounting") as db:
        ledger = db.execute("select * from ledger order by order_id, kind").fetchall()
        payments = db.execute("select key, data from payments order by key").fetchall()
    with faults.state_db("inventory") as db:
        stock = db.execute("select * from stock order by sku").fetchall()
    with faults.state_db("shipping") as db:
        shipments = db.execute("select key, data from shipments order by key").fetchall()
    return {"ledger": ledger, "payments": payments, "stock": stock, "shipments": shipments}
