"""Order placed -> ShipmentDispatched visible, p50/p99, over the broker's own end-to-end latency, same run.

    uv run python bench/e2e_latency.py [--rounds 3] [--rate 10] [--duration 10] [--floor-messages 1000]

Needs the whole system (`make up`; started here if not running, and stopped again afterwards).
Per round, interleaved:

- **kafka floor**: `org.apache.kafka.tools.EndToEndLatency` (acks=all, one record of a median OrderPlaced's
  size at a time: produce, wait for the ack, poll it back with fetch.max.wait.ms=0);
- **eventshop**: real invoices POSTed to the order API in open loop (`--rate` per second for `--duration` s),
  from a process pinned to the generator CPU which also reads the order topics (assigned at their end,
  fetch.wait.max.ms=5). Latency of an order = when its ShipmentDispatched record reached that reader -
  the POST's intended send time (an order whose stock ran out ends with ShipmentCancelled after the same
  three hops: it is counted too, and the split is reported). Where the time goes comes from the records'
  CreateTime stamps (set by each producing service's librdkafka): POST -> OrderPlaced produced, accounting
  and inventory hops, the shipping hop, and final record produced -> visible.

Ratios: eventshop p50 / floor p50 and eventshop p99 / floor p99 per round (the floor tool reports whole
milliseconds; a 0 ms p50 is replaced by its average). Writes bench/results/e2e_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib

FLOOR_TOPIC = "bench.e2e-floor"
GROUPS = ("order-view", "accounting", "inventory", "shipping")
RECORDS = {
    "placed": "OrderPlaced",
    "captured": "PaymentCaptured",
    "declined": "PaymentDeclined",
    "reserved": "StockReserved",
    "shortage": "StockShortage",
    "dispatched": "ShipmentDispatched",
    "cancelled": "ShipmentCancelled",
}


# -- the eventshop arm (child: `e2e_latency.py --arm CONFIG_JSON`) --------------------------------------
def eventshop_arm(config: dict[str, Any]) -> dict[str, Any]:
    import aiohttp
    from confluent_kafka import Consumer, TopicPartition

    from eventkit.catalogue import load_catalogue

    settings = benchlib.kafka_settings()
    catalogue = load_catalogue(settings.schemas_dir)
    topic_of = {catalogue.topic_for(record).name: short for short, record in RECORDS.items()}
    reader = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": config["group"],
                       "enable.auto.commit": False, "fetch.wait.max.ms": 5, "fetch.error.backoff.ms": 5})  # fmt: skip
    ends = benchlib.end_offsets(list(topic_of))
    reader.assign([TopicPartition(t, p, o) for (t, p), o in ends.items()])
    seen: dict[str, dict[str, tuple[float, float]]] = {}  # order id -> kind -> (created, received), seconds
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            msg = reader.poll(0.05)  # returns as soon as a record is there
            if msg is not None and msg.error() is None:
                received = time.time()
                key = (msg.key() or b"").decode()
                kind = topic_of[msg.topic()]
                seen.setdefault(key, {}).setdefault(kind, (msg.timestamp()[1] / 1000, received))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    bodies = [line for line in Path(config["bodies"]).read_text().splitlines() if line]
    count = int(config["rate"] * config["duration"])
    sent: dict[str, float] = {}  # order id -> intended send time (wall clock)
    failed: list[int] = []

    async def place() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            loop = asyncio.get_running_loop()
            start_wall, start = time.time() + 0.2, loop.time() + 0.2

            async def one(i: int) -> None:
                headers = {"Content-Type": "application/json", "Idempotency-Key": f"{config['key_prefix']}{i}"}
                async with session.post(config["url"], data=bodies[i % len(bodies)], headers=headers) as resp:
                    if resp.status == 202:
                        sent[(await resp.json())["order_id"]] = start_wall + i / config["rate"]
                    else:
                        failed.append(resp.status)

            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / config["rate"] - loop.time()))
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)

    asyncio.run(place())
    deadline = time.monotonic() + config["wait"]
    while time.monotonic() < deadline:
        if all(("dispatched" in seen.get(o, {}) or "cancelled" in seen.get(o, {})) for o in sent):
            break
        time.sleep(0.1)
    stop.set()
    thread.join(5)
    reader.close()
    orders = []
    for order_id, t0 in sent.items():
        kinds = dict(seen.get(order_id, {}))
        final = "dispatched" if "dispatched" in kinds else "cancelled" if "cancelled" in kinds else None
        entry: dict[str, Any] = {"final": final}
        if final:
            placed = kinds.get("placed", (None, None))[0]
            payment = (kinds.get("captured") or kinds.get("declined") or (None, None))[0]
            stock = (kinds.get("reserved") or kinds.get("shortage") or (None, None))[0]
            created, received = kinds[final]
            entry["e2e_ms"] = (received - t0) * 1000
            if placed and payment and stock:
                entry["hops_ms"] = {
                    "post_to_placed": (placed - t0) * 1000,
                    "accounting": (payment - placed) * 1000,
                    "inventory": (stock - placed) * 1000,
                    "shipping": (created - max(payment, stock)) * 1000,
                    "final_to_visible": (received - created) * 1000,
                }
        orders.append(entry)
    return {"orders": orders, "refused": len(failed)}


# -- the driver -----------------------------------------------------------------------------------------
def floor_round(messages: int, size: int) -> dict[str, Any]:
    import re
    import subprocess

    from eventshop_tools import stack

    cmd = benchlib.java_tool(
        "org.apache.kafka.tools.EndToEndLatency", stack.BOOTSTRAP, FLOOR_TOPIC, str(messages), "all", str(size)
    )
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
    avg = re.search(r"Avg latency: ([\d.]+) ms", out)
    pct = re.search(r"50th = (\d+), 99th = (\d+), 99.9th = (\d+)", out)
    assert avg and pct, out[-500:]
    return {"avg_ms": float(avg.group(1)), "p50_ms": int(pct.group(1)), "p99_ms": int(pct.group(2)),
            "p999_ms": int(pct.group(3))}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    from eventkit.serde import AvroCodec
    from eventshop_tools import stack

    tag = benchlib.run_id()
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    orders = benchlib.real_orders(int(args.rate * args.duration), args.data)
    bodies = tmp / "bodies.jsonl"
    bodies.write_text("".join(json.dumps(o.body(), separators=(",", ":")) + "\n" for o in orders))
    catalogue = benchlib.bench_catalogue({})
    codec = AvroCodec.connect(benchlib.kafka_settings().schema_registry_url, catalogue)
    events = benchlib.order_events(500, args.data, "e2e")
    size = int(statistics.median(len(codec.encode("orders.placed", e)) for e in events))
    benchlib.kafka_tools_classpath()
    benchlib.create_topics({FLOOR_TOPIC: 1})
    url = f"{stack.component('order').url}/orders"

    def floor(i: int) -> dict[str, Any]:
        result = floor_round(args.floor_messages, size)
        print(f"  kafka floor round {i}: avg {result['avg_ms']:.2f} ms  p50 {result['p50_ms']} ms  "
              f"p99 {result['p99_ms']} ms", flush=True)  # fmt: skip
        return result

    def ours(i: int) -> dict[str, Any]:
        benchlib.wait_drained(GROUPS, timeout=120)
        config = {"url": url, "bodies": str(bodies), "rate": args.rate, "duration": args.duration, "wait": 60,
                  "key_prefix": f"bench-{tag}-e2e-{i}-", "group": f"bench-e2e-{tag}-{i}"}  # fmt: skip
        result = benchlib.run_json(
            benchlib.python_cmd("e2e_latency.py", "--arm", json.dumps(config), cpu_list=benchlib.generator_cpus()),
            timeout=args.duration + 180,
        )
        done = [o for o in result["orders"] if o["final"]]
        latency = benchlib.latency_summary([o["e2e_ms"] for o in done])
        hops = {
            hop: benchlib.latency_summary([o["hops_ms"][hop] for o in done if "hops_ms" in o])
            for hop in ("post_to_placed", "accounting", "inventory", "shipping", "final_to_visible")
        }
        summary = {
            "orders": len(result["orders"]),
            "final": len(done),
            "dispatched": sum(1 for o in done if o["final"] == "dispatched"),
            "cancelled": sum(1 for o in done if o["final"] == "cancelled"),
            "refused": result["refused"],
            "latency": latency,
            "hops": hops,
        }
        print(f"  eventshop   round {i}: p50 {latency.get('p50_ms', 0):7.1f} ms  p99 {latency.get('p99_ms', 0):7.1f} ms"
              f"  ({summary['dispatched']} dispatched, {summary['cancelled']} cancelled, "
              f"{summary['orders'] - summary['final']} not final)", flush=True)  # fmt: skip
        return summary

    try:
        results = benchlib.interleave([("floor", floor), ("eventshop", ours)], args.rounds)
    finally:
        benchlib.delete_topics([FLOOR_TOPIC])
    floor_p50 = [r["p50_ms"] or r["avg_ms"] for r in results["floor"]]
    floor_p99 = [max(1, r["p99_ms"]) for r in results["floor"]]
    ours_p50 = [r["latency"]["p50_ms"] for r in results["eventshop"]]
    ours_p99 = [r["latency"]["p99_ms"] for r in results["eventshop"]]
    hop_names = ("post_to_placed", "accounting", "inventory", "shipping", "final_to_visible")
    return {
        "config": {
            "rounds": args.rounds,
            "rate_per_s": args.rate,
            "duration_s": args.duration,
            "floor_messages": args.floor_messages,
            "record_bytes": size,
        },
        "arms": {
            "eventshop_p50_ms": benchlib.spread(ours_p50),
            "eventshop_p99_ms": benchlib.spread(ours_p99),
            "kafka_floor_p50_ms": benchlib.spread(floor_p50),
            "kafka_floor_p99_ms": benchlib.spread(floor_p99),
            "kafka_floor_avg_ms": benchlib.spread([r["avg_ms"] for r in results["floor"]]),
            "hops_p50_ms": {
                h: benchlib.spread([r["hops"][h]["p50_ms"] for r in results["eventshop"]]) for h in hop_names
            },
        },
        "ratios": {
            "e2e_vs_kafka_floor_p50": benchlib.ratio(ours_p50, floor_p50),
            "e2e_vs_kafka_floor_p99": benchlib.ratio(ours_p99, floor_p99),
        },
        "rounds": results,
    }


def table(result: dict[str, Any]) -> str:
    a, r = result["arms"], result["ratios"]
    rows = [
        ("eventshop: order placed -> ShipmentDispatched visible, p50 (ms)", benchlib.fmt_spread(a["eventshop_p50_ms"])),
        ("eventshop: p99 (ms)", benchlib.fmt_spread(a["eventshop_p99_ms"])),
        ("Kafka EndToEndLatency p50 (ms)", benchlib.fmt_spread(a["kafka_floor_p50_ms"], 1)),
        ("Kafka EndToEndLatency p99 (ms)", benchlib.fmt_spread(a["kafka_floor_p99_ms"])),
        ("**e2e_vs_kafka_floor** p50", benchlib.fmt_ratio(r["e2e_vs_kafka_floor_p50"], 0)),
        ("**e2e_vs_kafka_floor** p99", benchlib.fmt_ratio(r["e2e_vs_kafka_floor_p99"], 0)),
        *((f"hop p50: {hop} (ms)", benchlib.fmt_spread(s)) for hop, s in a["hops_p50_ms"].items()),
    ]
    return benchlib.measure_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="orders per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of orders per round")
    parser.add_argument("--floor-messages", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.arm:
        print(json.dumps(eventshop_arm(json.loads(args.arm))))
        return 0
    return benchlib.run_and_report("e2e_latency", lambda: run(args), table, services=True)


if __name__ == "__main__":
    sys.exit(main())
