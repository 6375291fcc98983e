"""Same-run ceilings: what the broker can do on this machine, and what bare Python clients can do.

    uv run python bench/ceilings.py [--rounds 3] [--records 300000] [--e2e-messages 1000]

Needs Kafka and the registry (`make infra`; started here if not running, stopped again afterwards).
Per round, interleaved (kafka producer, python producer, kafka consumer, python consumer, kafka e2e):

- **kafka_producer**: `org.apache.kafka.tools.ProducerPerformance` (kafka-tools, same version as the broker,
  fetched into .local/ on first use) with eventshop's producer settings (acks=all, idempotence, linger.ms=5,
  lz4), over a payload file of real orders (each order's JSON cut to the length of its Avro OrderPlaced, so
  real text, the real size distribution);
- **python_producer**: a bare confluent-kafka loop producing the same payloads with the same settings:
  `produce()` + `poll(0)`, then `flush()`;
- **kafka_consumer**: `ConsumerPerformance` over the Java producer's topic (`fetch.nMsg.sec`, i.e. without the
  group join);
- **python_consumer**: a bare `consume(500)` loop over the Python producer's topic, no decoding;
- **kafka_e2e**: `EndToEndLatency` (acks=all, one record at a time: send, wait for the ack, poll it back).

Clients are pinned to the generator CPU (the broker runs where the OS puts it). Topics `bench.ceiling-*` are
created here and deleted at the end. Writes bench/results/ceilings.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib

TOPIC_JAVA, TOPIC_PY, TOPIC_E2E = "bench.ceiling-java", "bench.ceiling-py", "bench.ceiling-e2e"
PRODUCER_PROPS = {"acks": "all", "enable.idempotence": "true", "linger.ms": "5", "compression.type": "lz4"}


# -- the Python arms (child processes: `ceilings.py --arm produce|consume CONFIG_JSON`) ------------------
def python_produce(config: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import Producer

    payloads = [line for line in Path(config["payloads"]).read_bytes().split(b"\n") if line]
    producer = Producer({"bootstrap.servers": config["bootstrap"], **PRODUCER_PROPS})
    producer.produce(config["topic"], value=payloads[0])
    producer.flush(30)
    count, n = config["count"], len(payloads)
    began = time.perf_counter()
    for i in range(count):
        value = payloads[i % n]
        while True:
            try:
                producer.produce(config["topic"], value=value)
                break
            except BufferError:  # local queue full: let librdkafka send
                producer.poll(0.005)
        producer.poll(0)
    left = producer.flush(60)
    seconds = time.perf_counter() - began
    return {"msgs_per_s": count / seconds, "seconds": seconds, "unconfirmed": left}


def python_consume(config: dict[str, Any]) -> dict[str, Any]:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": config["bootstrap"], "group.id": config["group"], "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(config["topic"], p, OFFSET_BEGINNING) for p in range(config["partitions"])])
    count, seen = config["count"], 0
    began = None
    deadline = time.monotonic() + 120
    while seen < count and time.monotonic() < deadline:
        batch = consumer.consume(500, timeout=1.0)
        if batch and began is None:
            began = time.perf_counter()
        seen += sum(1 for m in batch if m.error() is None)
    seconds = time.perf_counter() - (began or time.perf_counter())
    consumer.close()
    return {"msgs_per_s": seen / seconds if seconds else 0.0, "seconds": seconds, "consumed": seen}


# -- Kafka's tools --------------------------------------------------------------------------------------
def kafka_producer(topic: str, records: int, payload_file: Path, bootstrap: str) -> dict[str, Any]:
    props = [f"bootstrap.servers={bootstrap}", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items())]
    cmd = benchlib.java_tool(
        "org.apache.kafka.tools.ProducerPerformance", "--topic", topic, "--num-records", str(records),
        "--payload-file", str(payload_file), "--throughput", "-1", "--producer-props", *props,
    )  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    last = [ln for ln in out.splitlines() if "records sent" in ln][-1]
    match = re.search(r"records sent, ([\d.]+) records/sec .*?, ([\d.]+) ms avg latency", last)
    assert match, last
    return {"msgs_per_s": float(match.group(1)), "avg_latency_ms": float(match.group(2)), "line": last.strip()}


def kafka_consumer(topic: str, records: int, bootstrap: str, group: str) -> dict[str, Any]:
    cmd = benchlib.java_tool(
        "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
        "--messages", str(records), "--group", group, "--timeout", "60000",
    )  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = [h.strip() for h in lines[-2].split(",")]
    values = dict(zip(header, (v.strip() for v in lines[-1].split(",")), strict=False))
    return {"msgs_per_s": float(values["fetch.nMsg.sec"]), "with_join_msgs_per_s": float(values["nMsg.sec"]),
            "line": lines[-1].strip()}  # fmt: skip


def kafka_e2e(topic: str, messages: int, size: int, bootstrap: str) -> dict[str, Any]:
    cmd = benchlib.java_tool(
        "org.apache.kafka.tools.EndToEndLatency", bootstrap, topic, str(messages), "all", str(size)
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    avg = re.search(r"Avg latency: ([\d.]+) ms", out)
    pct = re.search(r"50th = (\d+), 99th = (\d+), 99.9th = (\d+)", out)
    assert avg and pct, out[-500:]
    return {"avg_ms": float(avg.group(1)), "p50_ms": int(pct.group(1)), "p99_ms": int(pct.group(2)),
            "p999_ms": int(pct.group(3)), "messages": messages}  # fmt: skip


# -- the driver -------------------------------------------------------------------------------------------
def payload_lines(count: int, data: Path) -> list[bytes]:
    """One text payload per real order, as long as that order's OrderPlaced is in Avro: its JSON record cut
    to the Avro length. Both Kafka's tool (--payload-file takes UTF-8 lines) and the Python arms send exactly
    these bytes: real data, the real size distribution, comparable compressibility."""
    from eventkit.serde import AvroCodec

    catalogue = benchlib.bench_catalogue({TOPIC_PY: "OrderPlaced"})
    codec = AvroCodec.connect(benchlib.kafka_settings().schema_registry_url, catalogue)
    lines = []
    for event in benchlib.order_events(count, data, "ceiling"):
        size = len(codec.encode(TOPIC_PY, event))
        text = json.dumps(event.to_record(), default=str, separators=(",", ":"), ensure_ascii=True)
        lines.append(text[:size].encode())
    return lines


def run(args: argparse.Namespace) -> dict[str, Any]:
    from eventshop_tools import stack

    bootstrap = stack.BOOTSTRAP
    benchlib.kafka_tools_classpath()  # fetch before the clock matters
    benchlib.create_topics({TOPIC_JAVA: 3, TOPIC_PY: 3, TOPIC_E2E: 1}, register={TOPIC_PY: "OrderPlaced"})
    payloads = payload_lines(2000, args.data)
    size = int(statistics.median(len(v) for v in payloads))
    payload_file = Path(tempfile.mkdtemp(prefix="bench-ceilings-")) / "payloads.txt"
    payload_file.write_bytes(b"\n".join(payloads) + b"\n")
    run_tag = benchlib.run_id()
    rounds: list[dict[str, Any]] = []

    def child(arm: str, **config: Any) -> dict[str, Any]:
        cmd = benchlib.python_cmd("ceilings.py", "--arm", arm, json.dumps(config), cpu_list=benchlib.generator_cpus())
        return benchlib.run_json(cmd, timeout=180)

    try:
        for i in range(args.rounds):
            r: dict[str, Any] = {"round": i}
            r["kafka_producer"] = kafka_producer(TOPIC_JAVA, args.records, payload_file, bootstrap)
            r["python_producer"] = child(
                "produce", bootstrap=bootstrap, topic=TOPIC_PY, count=args.records, payloads=str(payload_file)
            )
            r["kafka_consumer"] = kafka_consumer(TOPIC_JAVA, args.records, bootstrap, f"bench-cp-{run_tag}-{i}")
            r["python_consumer"] = child(
                "consume", bootstrap=bootstrap, topic=TOPIC_PY, count=args.records, partitions=3,
                group=f"bench-pc-{run_tag}-{i}",
            )  # fmt: skip
            r["kafka_e2e"] = kafka_e2e(TOPIC_E2E, args.e2e_messages, size, bootstrap)
            rounds.append(r)
            print(
                f"  round {i}: kafka producer {r['kafka_producer']['msgs_per_s']:9,.0f}/s  python producer "
                f"{r['python_producer']['msgs_per_s']:8,.0f}/s  "
                f"kafka consumer {r['kafka_consumer']['msgs_per_s']:9,.0f}/s  "
                f"python consumer {r['python_consumer']['msgs_per_s']:8,.0f}/s  kafka e2e avg "
                f"{r['kafka_e2e']['avg_ms']:.2f} ms p99 {r['kafka_e2e']['p99_ms']} ms",
                flush=True,
            )
    finally:
        benchlib.delete_topics([TOPIC_JAVA, TOPIC_PY, TOPIC_E2E])

    def col(arm: str, key: str) -> list[float]:
        return [float(r[arm][key]) for r in rounds]

    return {
        "config": {
            "rounds": args.rounds,
            "records": args.records,
            "e2e_messages": args.e2e_messages,
            "record_bytes": size,
            "producer_settings": PRODUCER_PROPS,
        },
        "arms": {
            "kafka_producer_msgs_per_s": benchlib.spread(col("kafka_producer", "msgs_per_s")),
            "python_producer_msgs_per_s": benchlib.spread(col("python_producer", "msgs_per_s")),
            "kafka_consumer_msgs_per_s": benchlib.spread(col("kafka_consumer", "msgs_per_s")),
            "python_consumer_msgs_per_s": benchlib.spread(col("python_consumer", "msgs_per_s")),
            "kafka_e2e_avg_ms": benchlib.spread(col("kafka_e2e", "avg_ms")),
            "kafka_e2e_p50_ms": benchlib.spread(col("kafka_e2e", "p50_ms")),
            "kafka_e2e_p99_ms": benchlib.spread(col("kafka_e2e", "p99_ms")),
        },
        "ratios": {
            "python_vs_kafka_producer": benchlib.ratio(
                col("python_producer", "msgs_per_s"), col("kafka_producer", "msgs_per_s")
            ),
            "python_vs_kafka_consumer": benchlib.ratio(
                col("python_consumer", "msgs_per_s"), col("kafka_consumer", "msgs_per_s")
            ),
        },
        "rounds": rounds,
    }


def table(result: dict[str, Any]) -> str:
    a, r = result["arms"], result["ratios"]
    rows = [
        ("Kafka ProducerPerformance (msgs/s)", benchlib.fmt_spread(a["kafka_producer_msgs_per_s"])),
        ("bare confluent-kafka producer (msgs/s)", benchlib.fmt_spread(a["python_producer_msgs_per_s"])),
        ("Kafka ConsumerPerformance (msgs/s)", benchlib.fmt_spread(a["kafka_consumer_msgs_per_s"])),
        ("bare confluent-kafka consume(500) loop (msgs/s)", benchlib.fmt_spread(a["python_consumer_msgs_per_s"])),
        ("Kafka EndToEndLatency avg (ms)", benchlib.fmt_spread(a["kafka_e2e_avg_ms"], 2)),
        ("Kafka EndToEndLatency p99 (ms)", benchlib.fmt_spread(a["kafka_e2e_p99_ms"])),
        ("python / kafka producer", benchlib.fmt_ratio(r["python_vs_kafka_producer"])),
        ("python / kafka consumer", benchlib.fmt_ratio(r["python_vs_kafka_consumer"])),
    ]
    return "\n".join(["| ceiling | median (min-max) |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=300_000, help="records per producer/consumer arm-round")
    parser.add_argument("--e2e-messages", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.arm:
        config = json.loads(rest[0])
        print(json.dumps(python_produce(config) if args.arm == "produce" else python_consume(config)))
        return 0
    return benchlib.run_and_report("ceilings", lambda: run(args), table, services=False)


if __name__ == "__main__":
    sys.exit(main())
