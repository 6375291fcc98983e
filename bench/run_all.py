"""`make bench`: every benchmark in bench/, one after the other, gathered into one table.

    uv run python bench/run_all.py [--only NAME,NAME] [--skip NAME,NAME]

Starts the native runtime if it is not running (Kafka, the registry and every service, as `make up`) and
stops what it started at the end. Each benchmark runs as its own process, exactly as one would run it alone
(`uv run python bench/<name>.py ...`), and writes bench/results/<name>.json; this runner then writes
bench/results/latest.json (every ratio under `results`, with the commands, the versions of Kafka, Apicurio,
Python and confluent-kafka, and the machine: cores, memory, CPU model) and bench/results/latest.md.
Exit code 0 only if every benchmark succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import benchlib

# name -> (script and arguments, result file). The order keeps the quiet measurements first: the followers
# and end-to-end latency before the saturation and thesis runs put thousands of orders through the system.
BENCHMARKS: dict[str, tuple[list[str], str]] = {
    "ws_followers": (["ws_followers.py"], "ws_followers.json"),
    "e2e_latency": (["e2e_latency.py"], "e2e_latency.json"),
    "ceilings": (["ceilings.py"], "ceilings.json"),
    "producer_vs_raw": (["producer_vs_raw.py"], "producer_vs_raw.json"),
    "consumer_vs_raw": (["consumer_vs_raw.py"], "consumer_vs_raw.json"),
    "recommend_scorer": (["recommend_scorer.py"], "recommend_scorer.json"),
    "async_vs_sync_healthy": (["async_vs_sync.py", "--scenario", "healthy"], "async_vs_sync_healthy.json"),
    "async_vs_sync_slow": (["async_vs_sync.py", "--scenario", "slow"], "async_vs_sync_slow.json"),
    "async_vs_sync_down": (["async_vs_sync.py", "--scenario", "down"], "async_vs_sync_down.json"),
    "intake": (["intake.py"], "intake.json"),
}
BUDGET_S = 120  # each benchmark is meant to finish within 2 minutes on the 2-core machine

# key in latest.json -> (benchmark, where in its result, what it compares, goal)
KEYS: list[tuple[str, str, tuple[str, ...], str, str]] = [
    ("python_vs_kafka_producer", "ceilings", ("ratios", "python_vs_kafka_producer"),
     "bare confluent-kafka producer / Kafka ProducerPerformance (msgs/s)", ""),
    ("python_vs_kafka_consumer", "ceilings", ("ratios", "python_vs_kafka_consumer"),
     "bare confluent-kafka consume loop / Kafka ConsumerPerformance (msgs/s)", ""),
    ("producer_vs_raw", "producer_vs_raw", ("ratios", "producer_vs_raw"),
     "eventkit EventProducer / raw Producer + same AvroSerializer (msgs/s)", ">= 0.9"),
    ("producer_vs_raw_cpu_per_msg", "producer_vs_raw", ("ratios", "producer_vs_raw_cpu_per_msg"),
     "CPU µs per message, eventkit / raw", ""),
    ("consumer_vs_raw", "consumer_vs_raw", ("ratios", "consumer_vs_raw"),
     "eventkit ConsumerRunner (no-op handler) / raw consume(200) loop, same decoder (msgs/s)", ">= 0.9"),
    ("consumer_vs_raw_cpu_per_msg", "consumer_vs_raw", ("ratios", "consumer_vs_raw_cpu_per_msg"),
     "CPU µs per message, eventkit / raw", ""),
    ("faust_vs_plain_consumer", "recommend_scorer", ("ratios", "faust_vs_plain_consumer"),
     "recommend scorer: Faust app / plain consumer, same scores (orders/s)", ">= 0.5"),
    ("async_vs_sync_p99_healthy", "async_vs_sync_healthy", ("ratios", "async_vs_sync_p99_healthy"),
     "p99 latency, async 202 / sync calls, all healthy", ""),
    ("async_vs_sync_p99_slow_downstream", "async_vs_sync_slow", ("ratios", "async_vs_sync_p99_slow_downstream"),
     "p99 latency, async / sync, shipping +200 ms", "<= 0.05"),
    ("async_success_downstream_down", "async_vs_sync_down", ("success_rates", "async_success_downstream_down"),
     "share of requests answered 2xx, async, shipping down", "= 1.0"),
    ("sync_success_downstream_down", "async_vs_sync_down", ("success_rates", "sync_success_downstream_down"),
     "share of requests answered 2xx, sync, shipping down", ""),
    ("intake_vs_bare_fastapi", "intake", ("ratios", "intake_vs_bare_fastapi"),
     "POST /orders 202/s at saturation, eventshop / bare FastAPI", ">= 0.7"),
    ("intake_vs_bare_kafka", "intake", ("ratios", "intake_vs_bare_kafka"),
     "POST /orders 202/s, eventshop / bare FastAPI + eventkit send to Kafka", ""),
    ("e2e_vs_kafka_floor_p50", "e2e_latency", ("ratios", "e2e_vs_kafka_floor_p50"),
     "order placed -> ShipmentDispatched visible p50 / Kafka EndToEndLatency p50", ""),
    ("e2e_vs_kafka_floor_p99", "e2e_latency", ("ratios", "e2e_vs_kafka_floor_p99"),
     "same, p99 / Kafka EndToEndLatency p99", ""),
]  # fmt: skip


def adapt_recommend(result: dict[str, Any]) -> dict[str, Any]:
    """bench/recommend_scorer.py (the recommend issue's benchmark) reports orders/s per arm-round; the pairs
    (faust i, plain i) were measured next to each other, so their ratios give median and min-max."""
    rounds = result.get("rounds", [])
    faust = [r["orders_per_s"] for r in rounds if r["arm"] == "faust"]
    plain = [r["orders_per_s"] for r in rounds if r["arm"] == "plain"]
    result.setdefault("ratios", {})["faust_vs_plain_consumer"] = benchlib.ratio(faust, plain)
    return result


def dig(result: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(result, dict) or part not in result:
            return None
        result = result[part]
    return result


def run_one(name: str) -> dict[str, Any]:
    args, _ = BENCHMARKS[name]
    cmd = [sys.executable, str(benchlib.BENCH / args[0]), *args[1:]]
    print(f"\n== {name}: uv run python bench/{' '.join(args)}", flush=True)
    began = time.monotonic()
    code = subprocess.run(cmd, cwd=benchlib.ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    seconds = time.monotonic() - began
    print(f"== {name}: exit {code} in {seconds:.0f} s", flush=True)
    return {"command": f"uv run python bench/{' '.join(args)}", "exit_code": code, "seconds": round(seconds, 1)}


def gather(ran: dict[str, dict[str, Any]]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for name, (_, file) in BENCHMARKS.items():
        path = benchlib.RESULTS / file
        if path.exists() and name in ran:
            result = json.loads(path.read_text())
            details[name] = adapt_recommend(result) if name == "recommend_scorer" else result
    results: dict[str, Any] = {}
    for key, bench, where, meaning, goal in KEYS:
        value = dig(details.get(bench, {}), where)
        if value is not None:
            results[key] = {**value, "compares": meaning, "goal": goal, "benchmark": bench}
    context = {}
    if "ceilings" in details:
        context["ceilings"] = details["ceilings"]["arms"]
    if "e2e_latency" in details:
        context["e2e_latency"] = details["e2e_latency"]["arms"]
    for scenario in ("healthy", "slow", "down"):
        if f"async_vs_sync_{scenario}" in details:
            context[f"async_vs_sync_{scenario}"] = {
                "config": details[f"async_vs_sync_{scenario}"]["config"],
                "arms": details[f"async_vs_sync_{scenario}"]["arms"],
                "after_restore": details[f"async_vs_sync_{scenario}"].get("after_restore"),
            }
    for name in ("producer_vs_raw", "consumer_vs_raw", "intake"):
        if name in details:
            context[name] = details[name]["arms"]
    if "recommend_scorer" in details:
        rec = details["recommend_scorer"]
        context["recommend_scorer"] = {"orders_per_s": rec.get("orders_per_s"),
                                       "outputs_identical": rec.get("outputs_identical")}  # fmt: skip
    if "ws_followers" in details:
        ws = details["ws_followers"]
        context["ws_followers"] = {"memory": ws.get("memory"), "push_delay_all": ws.get("push_delay_all"),
                                   "delivery": ws.get("delivery")}  # fmt: skip
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench  (uv run python bench/run_all.py)",
        "versions": benchlib.versions(),
        "machine": benchlib.machine(),
        "cpus": {"generator": benchlib.generator_cpus(), "servers": benchlib.server_cpus()},
        "results": results,
        "context": context,
        "benchmarks": ran,
        "details": {name: {k: v for k, v in d.items() if k != "rounds"} for name, d in details.items()},
    }


def _value(key: str, v: dict[str, Any]) -> str:
    if key.endswith("_success_downstream_down"):
        return f"{v['median']:.1%} ({v['min']:.1%}-{v['max']:.1%})"
    digits = 0 if key.startswith("e2e_") else 3 if key.startswith("async_vs_sync") else 2
    return f"{v['median']:,.{digits}f} ({v['min']:,.{digits}f}-{v['max']:,.{digits}f})"


def markdown(latest: dict[str, Any]) -> str:
    v, m = latest["versions"], latest["machine"]
    lines = [
        f"`make bench` on {latest['when']}: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"load average {m['load_average'][0]} at the end; Kafka {v['kafka']}, Apicurio Registry "
        f"{v['apicurio_registry']}, Python {v['python']}, confluent-kafka {v['confluent_kafka']} "
        f"(librdkafka {v['librdkafka']}). Each ratio: median of the per-round ratios (arms interleaved A B A B "
        "A B), min-max in brackets.",
        "",
        "| key | compares (A / B) | median (min-max) | goal |",
        "|---|---|---:|---|",
    ]
    for key, value in latest["results"].items():
        lines.append(f"| `{key}` | {value['compares']} | {_value(key, value)} | {value['goal']} |")
    ctx = latest["context"]
    lines += ["", "| absolute figures (same runs) | median (min-max) |", "|---|---:|"]
    rows: list[tuple[str, str]] = []
    if "ceilings" in ctx:
        c = ctx["ceilings"]
        rows += [
            ("Kafka ProducerPerformance, msgs/s", benchlib.fmt_spread(c["kafka_producer_msgs_per_s"])),
            ("bare confluent-kafka producer, msgs/s", benchlib.fmt_spread(c["python_producer_msgs_per_s"])),
            ("Kafka ConsumerPerformance, msgs/s", benchlib.fmt_spread(c["kafka_consumer_msgs_per_s"])),
            ("bare confluent-kafka consume loop, msgs/s", benchlib.fmt_spread(c["python_consumer_msgs_per_s"])),
            ("Kafka EndToEndLatency avg / p99, ms",
             f"{benchlib.fmt_spread(c['kafka_e2e_avg_ms'], 2)} / {benchlib.fmt_spread(c['kafka_e2e_p99_ms'])}"),
        ]  # fmt: skip
    if "producer_vs_raw" in ctx:
        p = ctx["producer_vs_raw"]
        rows += [
            ("eventkit producer, msgs/s (CPU µs/msg)",
             f"{benchlib.fmt_spread(p['eventkit_msgs_per_s'])} ({benchlib.fmt_spread(p['eventkit_cpu_us_per_msg'])})"),
            ("raw producer + AvroSerializer, msgs/s (CPU µs/msg)",
             f"{benchlib.fmt_spread(p['raw_msgs_per_s'])} ({benchlib.fmt_spread(p['raw_cpu_us_per_msg'])})"),
        ]  # fmt: skip
    if "consumer_vs_raw" in ctx:
        c = ctx["consumer_vs_raw"]
        rows += [
            ("eventkit consumer runner, msgs/s (CPU µs/msg)",
             f"{benchlib.fmt_spread(c['eventkit_msgs_per_s'])} ({benchlib.fmt_spread(c['eventkit_cpu_us_per_msg'])})"),
            ("raw consume loop + decode, msgs/s (CPU µs/msg)",
             f"{benchlib.fmt_spread(c['raw_msgs_per_s'])} ({benchlib.fmt_spread(c['raw_cpu_us_per_msg'])})"),
        ]  # fmt: skip
    if "recommend_scorer" in ctx and ctx["recommend_scorer"]["orders_per_s"]:
        r = ctx["recommend_scorer"]["orders_per_s"]
        rows += [
            ("recommend scorer, Faust, orders/s", benchlib.fmt_spread(r["faust"])),
            ("recommend scorer, plain consumer, orders/s (outputs identical: "
             f"{ctx['recommend_scorer']['outputs_identical']})", benchlib.fmt_spread(r["plain"])),
        ]  # fmt: skip
    for scenario in ("healthy", "slow", "down"):
        name = f"async_vs_sync_{scenario}"
        if name in ctx:
            a, cfg = ctx[name]["arms"], ctx[name]["config"]
            for arm in ("async", "sync"):
                rows.append((
                    f"{scenario}, {cfg['rate_per_s']:g} req/s: {arm} p50 / p99 ms (server CPU ms/request)",
                    f"{benchlib.fmt_spread(a[arm]['p50_ms'], 1)} / {benchlib.fmt_spread(a[arm]['p99_ms'], 1)} "
                    f"({benchlib.fmt_spread(a[arm]['server_cpu_ms_per_request'], 1)})",
                ))  # fmt: skip
            after = ctx[name].get("after_restore")
            if after:
                rows.append((f"{scenario}: async backlog after shipping is back",
                             f"caught up in {after['catch_up_s']} s; {after['final']}/{after['sampled_orders']} "
                             "sampled accepted orders final"))  # fmt: skip
    if "intake" in ctx:
        i = ctx["intake"]
        rows += [
            ("POST /orders at saturation, eventshop 202/s (server CPU ms/request)",
             f"{benchlib.fmt_spread(i['eventshop_202_per_s'])} "
             f"({benchlib.fmt_spread(i['eventshop_server_cpu_ms_per_request'], 2)})"),
            ("bare FastAPI, 202/s (server CPU ms/request)",
             f"{benchlib.fmt_spread(i['bare_202_per_s'])} "
             f"({benchlib.fmt_spread(i['bare_server_cpu_ms_per_request'], 2)})"),
        ]  # fmt: skip
        if "bare_kafka_202_per_s" in i:
            rows.append(("bare FastAPI + eventkit send to Kafka, 202/s (server CPU ms/request)",
                         f"{benchlib.fmt_spread(i['bare_kafka_202_per_s'])} "
                         f"({benchlib.fmt_spread(i['bare_kafka_server_cpu_ms_per_request'], 2)})"))  # fmt: skip
    if "e2e_latency" in ctx:
        e = ctx["e2e_latency"]
        rows += [
            ("order placed -> ShipmentDispatched visible, p50 / p99 ms",
             f"{benchlib.fmt_spread(e['eventshop_p50_ms'])} / {benchlib.fmt_spread(e['eventshop_p99_ms'])}"),
            ("Kafka EndToEndLatency p50 / p99 ms (same run)",
             f"{benchlib.fmt_spread(e['kafka_floor_p50_ms'], 1)} / {benchlib.fmt_spread(e['kafka_floor_p99_ms'])}"),
            ("its hops, p50 ms: " + ", ".join(e["hops_p50_ms"]),
             " / ".join(f"{s['median']:.0f}" for s in e["hops_p50_ms"].values())),
        ]  # fmt: skip
    if "ws_followers" in ctx and ctx["ws_followers"].get("memory"):
        w = ctx["ws_followers"]
        rows.append(("1,000 WebSocket followers: KiB per connection; event -> client p50 / p99 ms",
                     f"{w['memory']['per_connection_kib']}; {w['push_delay_all']['p50_ms']} / "
                     f"{w['push_delay_all']['p99_ms']}"))  # fmt: skip
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "| benchmark | command | seconds | exit |", "|---|---|---:|---:|"]
    for name, info in latest["benchmarks"].items():
        over = " (over 2 min)" if info["seconds"] > BUDGET_S else ""
        lines.append(f"| {name} | `{info['command']}` | {info['seconds']:.0f}{over} | {info['exit_code']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names")
    args = parser.parse_args(argv)
    names = [n for n in BENCHMARKS if not args.only or n in args.only.split(",")]
    names = [n for n in names if n not in args.skip.split(",")]
    unknown = {*args.only.split(","), *args.skip.split(",")} - {"", *BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; known: {', '.join(BENCHMARKS)}")
    began = time.monotonic()
    started = benchlib.ensure_stack(services=True)
    ran: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            ran[name] = run_one(name)
    finally:
        benchlib.stop_started(started)
    latest = gather(ran)
    latest["wall_seconds"] = round(time.monotonic() - began, 1)
    benchlib.RESULTS.mkdir(parents=True, exist_ok=True)
    (benchlib.RESULTS / "latest.json").write_text(json.dumps(latest, indent=2, default=str) + "\n")
    table = markdown(latest)
    (benchlib.RESULTS / "latest.md").write_text(table)
    print("\n" + table)
    failed = [n for n, info in ran.items() if info["exit_code"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    print(f"written to bench/results/latest.json and latest.md ({latest['wall_seconds']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
