"""POST /orders 202s per second at saturation: the real order API vs a bare FastAPI endpoint without Kafka.

    uv run python bench/intake.py [--rounds 3] [--duration 8] [--concurrency 16]

Needs the whole system (`make up`; started here if not running, and stopped again afterwards).

- **eventshop**: the real order API of `make up` (:8000) with everything behind it running (its own
  order view consumer in the same process, accounting, inventory, shipping, recommend): body limit,
  validation, Idempotency-Key lookup and record (SQLite), Avro encoding, produce and wait for Kafka's ack.
- **bare**: `bench/sync_shop.py bare`: validates the same body (`OrderRequest`), derives the same order id
  and answers 202 with the same body and headers; no Kafka, no SQLite. Served the same way (uvicorn through
  `eventkit.service.serve`, JSON access log).
- **bare_kafka** (third arm, to split the gap): `sync_shop.py bare-kafka`: the bare endpoint plus eventshop's
  Kafka path (the OrderPlaced event built as the real endpoint does, `await EventProducer.send` to
  `bench.intake`), without the idempotency records, the body limit or the order view's consumer thread.

Closed loop: `--concurrency` connections, each sending the next real invoice (pre-generated bodies, its
own Idempotency-Key) when the last was answered; after a 1 s warm-up, 2xx answers per second over
`--duration` s. Both servers pinned to the server CPUs (the order service's affinity is restored at the
end), the generator to the generator CPU. Before each round the consumer groups have caught up.
Arms interleaved (eventshop, bare, bare_kafka) x rounds. Writes bench/results/intake.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchlib

GROUPS = ("order-view", "accounting", "inventory", "shipping")
KAFKA_TOPIC = "bench.intake"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from eventshop_tools import stack

    tag = benchlib.run_id()
    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    bodies = tmp / "bodies.jsonl"
    orders = benchlib.real_orders(3000, args.data)
    bodies.write_text("".join(json.dumps(o.body(), separators=(",", ":")) + "\n" for o in orders))
    port, kafka_port = benchlib.free_port(), benchlib.free_port()
    benchlib.create_topics({KAFKA_TOPIC: 3}, register={KAFKA_TOPIC: "OrderPlaced"})
    bare = benchlib.start_server(
        "bare-intake", benchlib.python_cmd("sync_shop.py", "bare", "--port", str(port)), port,
        cpu_list=benchlib.server_cpus(),
    )  # fmt: skip
    bare_kafka = benchlib.start_server(
        "bare-kafka-intake",
        benchlib.python_cmd("sync_shop.py", "bare-kafka", "--port", str(kafka_port), "--topic", KAFKA_TOPIC),
        kafka_port, cpu_list=benchlib.server_cpus(),
    )  # fmt: skip
    order = stack.component("order")
    pid = order.pid()
    affinity = benchlib.pin(pid, benchlib.server_cpus()) if pid else None
    urls = {
        "eventshop": f"{order.url}/orders",
        "bare": f"http://127.0.0.1:{port}/orders",
        "bare_kafka": f"http://127.0.0.1:{kafka_port}/orders",
    }
    servers = {"bare": bare.pid, "bare_kafka": bare_kafka.pid}

    def arm(name: str):
        def go(i: int) -> dict[str, Any]:
            benchlib.wait_drained(GROUPS, timeout=120)
            config = {"url": urls[name], "bodies": str(bodies), "mode": "closed", "concurrency": args.concurrency,
                      "duration": args.duration, "warmup": 1.0, "key_prefix": f"bench-{tag}-intake-{name}-{i}-",
                      "timeout": 30}  # fmt: skip
            path = tmp / f"{name}-{i}.json"
            path.write_text(json.dumps(config))
            server = order.pid() if name == "eventshop" else servers[name]
            cpu0 = benchlib.cpu_seconds(server) if server else 0.0
            result = benchlib.run_json(
                benchlib.python_cmd("loadgen.py", str(path), cpu_list=benchlib.generator_cpus()),
                timeout=args.duration + 120,
            )
            cpu = (benchlib.cpu_seconds(server) - cpu0) if server else 0.0
            latency = benchlib.latency_summary(result["latency_ms"])
            answered = sum(result["answered"].values())
            summary = {"ok_per_s": result["ok_per_s"], "answered": result["answered"], "errors": result["errors"],
                       "latency": latency, "generator_cpu_s": result["generator_cpu_s"],
                       # the server process only (for eventshop: HTTP + its view consumer thread), whole run
                       "server_cpu_ms_per_request": cpu / max(1, result["sent"]) * 1000,
                       "server_cpu_utilisation": cpu / (args.duration + 1.0)}  # fmt: skip
            print(f"  {name:<9} round {i}: {result['ok_per_s']:7.1f} 202/s  p50 {latency['p50_ms']:6.1f} ms  "
                  f"p99 {latency['p99_ms']:6.1f} ms  server CPU {summary['server_cpu_ms_per_request']:5.2f} ms/req "
                  f"({summary['server_cpu_utilisation']:.0%} of a CPU)  {answered} answers", flush=True)  # fmt: skip
            return summary

        return go

    try:
        arms = [("eventshop", arm("eventshop")), ("bare", arm("bare"))]
        if args.kafka_arm:
            arms.append(("bare_kafka", arm("bare_kafka")))
        results = benchlib.interleave(arms, args.rounds)
    finally:
        benchlib.stop_process(bare)
        benchlib.stop_process(bare_kafka)
        benchlib.delete_topics([KAFKA_TOPIC])
        if affinity is not None and order.pid():
            benchlib.pin(order.pid(), affinity)  # type: ignore[arg-type]
    rate = {name: [r["ok_per_s"] for r in rs] for name, rs in results.items()}
    return {
        "config": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "warmup_s": 1.0,
        },
        "arms": {
            "eventshop_202_per_s": benchlib.spread(rate["eventshop"]),
            "bare_202_per_s": benchlib.spread(rate["bare"]),
            "eventshop_server_cpu_ms_per_request": benchlib.spread(
                [r["server_cpu_ms_per_request"] for r in results["eventshop"]]
            ),
            "bare_server_cpu_ms_per_request": benchlib.spread(
                [r["server_cpu_ms_per_request"] for r in results["bare"]]
            ),
            **(
                {
                    "bare_kafka_202_per_s": benchlib.spread(rate["bare_kafka"]),
                    "bare_kafka_server_cpu_ms_per_request": benchlib.spread(
                        [r["server_cpu_ms_per_request"] for r in results["bare_kafka"]]
                    ),
                }
                if "bare_kafka" in rate
                else {}
            ),
        },
        "ratios": {
            "intake_vs_bare_fastapi": benchlib.ratio(rate["eventshop"], rate["bare"]),
            **(
                {
                    "bare_kafka_vs_bare_fastapi": benchlib.ratio(rate["bare_kafka"], rate["bare"]),
                    "intake_vs_bare_kafka": benchlib.ratio(rate["eventshop"], rate["bare_kafka"]),
                }
                if "bare_kafka" in rate
                else {}
            ),
        },
        "goal": {"intake_vs_bare_fastapi": ">= 0.7"},
        "rounds": results,
    }


def table(result: dict[str, Any]) -> str:
    a, r = result["arms"], result["ratios"]
    rows = [
        ("eventshop POST /orders (202/s)", benchlib.fmt_spread(a["eventshop_202_per_s"])),
        ("bare FastAPI, same validation (202/s)", benchlib.fmt_spread(a["bare_202_per_s"])),
        (
            "eventshop server process CPU per request (ms)",
            benchlib.fmt_spread(a["eventshop_server_cpu_ms_per_request"], 2),
        ),
        ("bare server process CPU per request (ms)", benchlib.fmt_spread(a["bare_server_cpu_ms_per_request"], 2)),
        ("**intake_vs_bare_fastapi** (goal >= 0.7)", benchlib.fmt_ratio(r["intake_vs_bare_fastapi"])),
    ]
    if "bare_kafka_202_per_s" in a:
        rows += [
            ("bare FastAPI + eventkit send to Kafka (202/s)", benchlib.fmt_spread(a["bare_kafka_202_per_s"])),
            ("its server CPU per request (ms)", benchlib.fmt_spread(a["bare_kafka_server_cpu_ms_per_request"], 2)),
            ("bare + Kafka / bare", benchlib.fmt_ratio(r["bare_kafka_vs_bare_fastapi"])),
            ("eventshop / bare + Kafka", benchlib.fmt_ratio(r["intake_vs_bare_kafka"])),
        ]
    return benchlib.measure_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0, help="measured seconds per round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--no-kafka-arm", dest="kafka_arm", action="store_false",
        help="skip the third arm (bare + eventkit's Kafka send), which splits the gap in two",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    args = parser.parse_args(argv)
    return benchlib.run_and_report("intake", lambda: run(args), table, services=True)


if __name__ == "__main__":
    sys.exit(main())
