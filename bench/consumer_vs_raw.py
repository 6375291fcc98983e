"""eventkit's consumer runner (real commit policy, no-op handler) vs a raw consume(batch) loop, same deserializer.

    uv run python bench/consumer_vs_raw.py [--rounds 3] [--count 20000]

Needs Kafka and the registry (`make infra`; started here if not running, stopped again afterwards).
`bench.consumer` (3 partitions, subject `bench.consumer-value`) is filled once with `--count` real
OrderPlaced events (keyed, with a `correlation_id` header, as the order API writes them); each arm-round
reads all of them under a fresh consumer group, in a fresh process pinned to the generator CPU:

- **eventkit**: `eventkit.consumer.ConsumerRunner` as every service runs it (`consume(200, 0.5 s)` batches,
  decode with `AvroCodec.decode` into the typed event, `Received`, the retry loop, `producer.flush()` of
  the (empty) outputs, `on_confirmed`, then `store_offsets` per record; auto-commit of stored offsets);
  the handler does nothing and emits nothing;
- **raw**: `Consumer.consume(200, timeout=0.5)` with default offset handling (auto store + auto commit),
  `AvroCodec.decode(msg.value())` per record, the same no-op handler.

msgs/s = records / (the first record handed to the handler -> the last batch done: for eventkit, its
`on_confirmed`), so the group join is not counted; CPU µs per message = process CPU / records.
Arms interleaved (eventkit, raw) x rounds. Writes bench/results/consumer_vs_raw.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchlib

TOPIC = "bench.consumer"
BATCH = 200


def arm(config: dict[str, Any]) -> dict[str, Any]:
    """One arm-round (child process)."""
    from confluent_kafka import Consumer

    from eventkit.consumer import ConsumerRunner, Received
    from eventkit.producer import EventProducer
    from eventkit.serde import AvroCodec

    settings = benchlib.kafka_settings()
    codec = AvroCodec.connect(settings.schema_registry_url, benchlib.bench_catalogue({TOPIC: "OrderPlaced"}))
    count = config["count"]
    seen = 0
    first: float | None = None
    cpu0 = 0.0

    def on_event(_event: Any) -> None:
        nonlocal seen, first, cpu0
        if first is None:
            first, cpu0 = time.perf_counter(), time.process_time()
        seen += 1

    if config["arm"] == "eventkit":
        confirmed = 0
        done = threading.Event()
        finished: list[float] = []

        def handler(received: Received) -> list[Any]:
            on_event(received.event)
            return []

        def on_confirmed(event_ids: list[str]) -> None:
            nonlocal confirmed
            confirmed += len(event_ids)
            if confirmed >= count and not done.is_set():
                finished.extend([time.perf_counter(), time.process_time()])
                done.set()

        runner = ConsumerRunner(
            settings=settings,
            producer=EventProducer(settings, codec, client_id="bench-consumer"),
            service="bench-consumer",
            group_id=config["group"],
            handler=handler,
            topics=[TOPIC],
            on_confirmed=on_confirmed,
        )
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        if not done.wait(180):
            raise RuntimeError(f"eventkit arm confirmed only {confirmed} of {count}")
        end, cpu_end = finished
        stop.set()
        thread.join(30)
    else:
        consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": config["group"],
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([TOPIC])
        deadline = time.monotonic() + 180
        while seen < count and time.monotonic() < deadline:
            for msg in consumer.consume(BATCH, timeout=0.5):
                if msg.error() is None:
                    on_event(codec.decode(msg.value()))
        end, cpu_end = time.perf_counter(), time.process_time()
        consumer.close()
        if seen < count:
            raise RuntimeError(f"raw arm read only {seen} of {count}")
    assert first is not None
    seconds = end - first
    return {"msgs_per_s": seen / seconds, "cpu_us_per_msg": (cpu_end - cpu0) / seen * 1e6, "seconds": seconds,
            "count": seen}  # fmt: skip


def fill(count: int, data: Path) -> float:
    from confluent_kafka import Producer

    from eventkit.producer import producer_config
    from eventkit.serde import AvroCodec

    settings = benchlib.kafka_settings()
    codec = AvroCodec.connect(settings.schema_registry_url, benchlib.bench_catalogue({TOPIC: "OrderPlaced"}))
    events = benchlib.order_events(count, data, "consumer")
    producer = Producer(producer_config(settings, "bench-fill"))
    for i, event in enumerate(events):
        producer.produce(
            TOPIC, key=event.key.encode(), value=codec.encode(TOPIC, event), headers=[("correlation_id", b"c%d" % i)]
        )
        producer.poll(0)
    assert producer.flush(60) == 0
    return sum(len(e.items) for e in events) / len(events)


def run(args: argparse.Namespace) -> dict[str, Any]:
    benchlib.create_topics({TOPIC: 3}, register={TOPIC: "OrderPlaced"})
    tag = benchlib.run_id()

    def arm_round(name: str):
        def go(i: int) -> dict[str, Any]:
            config = {"arm": name, "count": args.count, "group": f"bench-consumer-{tag}-{name}-{i}"}
            cmd = benchlib.python_cmd(
                "consumer_vs_raw.py", "--arm", json.dumps(config), cpu_list=benchlib.generator_cpus()
            )
            result = benchlib.run_json(cmd, timeout=240)
            print(f"  {name:<8} round {i}: {result['msgs_per_s']:8,.0f} msgs/s  "
                  f"{result['cpu_us_per_msg']:6.1f} µs CPU/msg", flush=True)  # fmt: skip
            return result

        return go

    try:
        lines = fill(args.count, args.data)
        results = benchlib.interleave([("eventkit", arm_round("eventkit")), ("raw", arm_round("raw"))], args.rounds)
    finally:
        benchlib.delete_topics([TOPIC])
    return {
        "config": {
            "rounds": args.rounds,
            "count": args.count,
            "batch": BATCH,
            "mean_lines_per_order": round(lines, 1),
            "topic": TOPIC,
        },
        **benchlib.eventkit_vs_raw(results, "consumer_vs_raw"),
    }


def table(result: dict[str, Any]) -> str:
    return benchlib.eventkit_vs_raw_table(
        result, "consumer_vs_raw", "eventkit ConsumerRunner, no-op handler", "raw consume(200) + AvroCodec.decode"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=20_000, help="records per arm-round")
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(arm(json.loads(args.arm))))
        return 0
    return benchlib.run_and_report("consumer_vs_raw", lambda: run(args), table, services=False)


if __name__ == "__main__":
    sys.exit(main())
