"""eventkit's producer path vs a raw confluent-kafka producer with the same Avro serializer (msgs/s, CPU/msg).

    uv run python bench/producer_vs_raw.py [--rounds 3] [--count 20000]

Needs Kafka and the registry (`make infra`; started here if not running, stopped again afterwards).
Both arms produce the same real OrderPlaced events (UCI Online Retail invoices, built before the clock
starts) to `bench.producer` (subject `bench.producer-value`, registered here like `make schemas` does),
keyed by order id, with a `correlation_id` header, with eventshop's producer settings
(`eventkit.producer.producer_config`: acks=all, idempotence, linger.ms=5, lz4):

- **eventkit**: `EventProducer.produce(topic, key, event, headers)` per event, then `flush()` (the path the
  consumer services take; it encodes through `AvroCodec.encode`);
- **raw**: `AvroSerializer(registry, schema, to_dict=Event.to_record)` with the same conf as eventkit's
  codec, `Producer.produce(...)` + `poll(0)` per event, then `flush()` — what one would write by hand.

Each arm-round is a fresh process pinned to the generator CPU; a warm-up of 200 events (connection,
schema lookup) comes first. msgs/s = events / (first produce -> flush returned); CPU µs per message =
process CPU time (every thread, librdkafka's included) / events. Arms interleaved (eventkit, raw) x rounds.
Writes bench/results/producer_vs_raw.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pickle
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

TOPIC = "bench.producer"
WARMUP = 200


def arm(config: dict[str, Any]) -> dict[str, Any]:
    """One arm-round (child process)."""
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from eventkit.producer import EventProducer, producer_config
    from eventkit.serde import AvroCodec

    settings = benchlib.kafka_settings()
    events = pickle.loads(Path(config["events"]).read_bytes())
    catalogue = benchlib.bench_catalogue({TOPIC: "OrderPlaced"})
    codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
    count, n = config["count"], len(events)
    correlation = "bench-correlation-id-0123456789abcdef"

    if config["arm"] == "eventkit":
        producer = EventProducer(settings, codec, client_id="bench-eventkit")
        headers = {"correlation_id": correlation}

        def produce_all(k: int) -> None:
            for i in range(k):
                event = events[i % n]
                producer.produce(TOPIC, event.key, event, headers)
            producer.flush()

    else:
        raw = Producer(producer_config(settings, "bench-raw"))
        serializer = AvroSerializer(
            codec.registry,
            catalogue.schema_str("OrderPlaced"),
            lambda e, _ctx: e.to_record(),
            conf={"auto.register.schemas": False, "use.latest.version": False},
        )
        context = SerializationContext(TOPIC, MessageField.VALUE)
        raw_headers = [("correlation_id", correlation.encode())]

        def produce_all(k: int) -> None:
            for i in range(k):
                event = events[i % n]
                raw.produce(TOPIC, key=event.key.encode(), value=serializer(event, context), headers=raw_headers)
                raw.poll(0)
            if raw.flush(60):
                raise RuntimeError("records left unconfirmed")

    produce_all(WARMUP)
    profile = cProfile.Profile() if config.get("profile") else None
    cpu0, began = time.process_time(), time.perf_counter()
    if profile:
        profile.enable()
    produce_all(count)
    if profile:
        profile.disable()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu0
    result = {"msgs_per_s": count / seconds, "cpu_us_per_msg": cpu / count * 1e6, "seconds": seconds, "count": count}
    if profile:
        stats = pstats.Stats(profile)
        rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)[:25]  # type: ignore[attr-defined]
        result["profile_cumulative_us_per_msg"] = {
            f"{func[2]} ({Path(func[0]).name}:{func[1]})": round(data[3] / count * 1e6, 2) for func, data in rows
        }
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    benchlib.create_topics({TOPIC: 3}, register={TOPIC: "OrderPlaced"})
    events = benchlib.order_events(min(args.count, 3000), args.data, "producer")
    events_file = Path(tempfile.mkdtemp(prefix="bench-producer-")) / "events.pkl"
    events_file.write_bytes(pickle.dumps(events))
    lines = sum(len(e.items) for e in events) / len(events)

    def arm_round(name: str):
        def go(i: int) -> dict[str, Any]:
            config = {"arm": name, "count": args.count, "events": str(events_file), "profile": args.profile}
            cmd = benchlib.python_cmd(
                "producer_vs_raw.py", "--arm", json.dumps(config), cpu_list=benchlib.generator_cpus()
            )
            result = benchlib.run_json(cmd, timeout=180)
            print(f"  {name:<8} round {i}: {result['msgs_per_s']:8,.0f} msgs/s  "
                  f"{result['cpu_us_per_msg']:6.1f} µs CPU/msg", flush=True)  # fmt: skip
            return result

        return go

    try:
        results = benchlib.interleave([("eventkit", arm_round("eventkit")), ("raw", arm_round("raw"))], args.rounds)
    finally:
        benchlib.delete_topics([TOPIC])
    return {
        "config": {
            "rounds": args.rounds,
            "count": args.count,
            "distinct_orders": len(events),
            "mean_lines_per_order": round(lines, 1),
            "topic": TOPIC,
        },
        **benchlib.eventkit_vs_raw(results, "producer_vs_raw"),
    }


def table(result: dict[str, Any]) -> str:
    return benchlib.eventkit_vs_raw_table(
        result, "producer_vs_raw", "eventkit EventProducer.produce + flush", "raw Producer + AvroSerializer"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=20_000, help="events per arm-round")
    parser.add_argument("--profile", action="store_true", help="cProfile each arm (slower; for where time goes)")
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(arm(json.loads(args.arm))))
        return 0
    return benchlib.run_and_report("producer_vs_raw", lambda: run(args), table, services=False)


if __name__ == "__main__":
    sys.exit(main())
