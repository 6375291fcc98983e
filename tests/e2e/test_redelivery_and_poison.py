"""Redelivered events change nothing twice; poison records go to the dead-letter topic and nothing stops."""

from __future__ import annotations

import struct
import uuid

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition

from eventshop_tools.testing import Infra, eventually, order_body

ACCOUNTING = "http://127.0.0.1:8002"
INVENTORY = "http://127.0.0.1:8003"
CONSUMER_GROUPS = ("accounting", "inventory", "shipping", "order-view")


def find_record(infra: Infra, topic: str, key: str):
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    try:
        while True:
            msg = consumer.poll(5)
            assert msg is not None, f"no record with key {key} in {topic}"
            if msg.error() is None and msg.key() == key.encode():
                return msg
    finally:
        consumer.close()


def committed(infra: Infra, group: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, partition)], timeout=10)[0].offset
    finally:
        consumer.close()


def produce_raw(infra: Infra, topic: str, key: str, value: bytes | None, headers=None) -> tuple[int, int]:
    producer = Producer({"bootstrap.servers": infra.bootstrap_servers, "acks": "all"})
    delivered = []
    producer.produce(topic, key=key, value=value, headers=headers, on_delivery=lambda e, m: delivered.append((e, m)))
    producer.flush(10)
    ((err, msg),) = delivered
    assert err is None
    return msg.partition(), msg.offset()


def test_a_duplicated_delivery_changes_nothing(infra, catalogue, place, wait_final, order_api, sku, unique) -> None:
    item = sku()
    order_id = place(order_body(f"c-{unique}", (item, 7, "3.75")))
    wait_final(order_id)
    topic = catalogue.topic_for("OrderPlaced").name
    original = find_record(infra, topic, order_id)
    partition, offset = produce_raw(infra, topic, order_id, original.value(), original.headers())
    for group in CONSUMER_GROUPS:
        eventually(lambda g=group: committed(infra, g, topic, partition) > offset, timeout=30)

    ledger = httpx.get(f"{ACCOUNTING}/ledger/c-{unique}").json()
    assert [e["kind"] for e in ledger["entries"]] == ["charge"]
    assert ledger["balance"] == "26.250"
    stock = httpx.get(f"{INVENTORY}/stock/{item}").json()
    assert stock["on_hand"] == stock["initial"] - 7
    timeline = [e["type"] for e in order_api.get(f"/orders/{order_id}").json()["timeline"]]
    assert len(timeline) == len(set(timeline)), timeline


def test_poison_records_are_dead_lettered_with_the_reason_and_consumers_go_on(
    infra, catalogue, place, wait_final, sku, unique
) -> None:
    topic = catalogue.topic_for("OrderPlaced").name
    key = f"poison-{unique}"
    real = find_record(infra, topic, place(order_body(f"c-{unique}", (sku(), 1, "1.00"))))
    poison = {
        "wrong-magic": b"\x07" + real.value()[1:],
        "unknown-schema-id": b"\x00" + struct.pack(">I", 987_654_321) + real.value()[5:],
        "truncated": real.value()[: len(real.value()) // 2],
        "not-avro": b"hello, I am not an event",
    }
    for kind, value in poison.items():
        produce_raw(infra, topic, key, value, [("poison-kind", kind.encode())])

    dlq = catalogue.dead_letter_topic(topic)
    consumer = Consumer({"bootstrap.servers": infra.bootstrap_servers, "group.id": f"t-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([dlq])
    seen: dict[tuple[str, str], dict[str, str]] = {}
    expected = {(kind, group) for kind in poison for group in ("accounting", "inventory", "shipping", "order")}

    def collect() -> bool:
        msg = consumer.poll(1)
        if msg is not None and msg.error() is None and msg.key() == key.encode():
            headers = {k: v.decode() for k, v in msg.headers()}
            seen[(headers["poison-kind"], headers["dlq.service"])] = {**headers, "value": msg.value()}
        return set(seen) >= expected

    try:
        eventually(collect, timeout=60, interval=0)
    finally:
        consumer.close()
    for (kind, _service), headers in seen.items():
        assert headers["value"] == poison[kind], "the original bytes are kept"
        assert headers["dlq.original.topic"] == topic
        assert headers["dlq.error.class"] == "DeserializationError"
        assert headers["dlq.error.message"]
        assert int(headers["dlq.original.offset"]) >= 0 and headers["dlq.attempts"] == "1"
    assert "magic byte" in seen[("wrong-magic", "accounting")]["dlq.error.message"]
    assert "unknown to the registry" in seen[("unknown-schema-id", "accounting")]["dlq.error.message"]

    # The consumers went on: a new order still completes.
    assert wait_final(place(order_body(f"c-{unique}", (sku(), 1, "1.00"))))["status"] == "dispatched"
