"""The thesis: eventshop's 202 path vs a synchronous design, same open-loop arrival rate, same real orders.

    uv run python bench/async_vs_sync.py --scenario healthy|slow|down [--rate 30] [--duration 10] [--rounds 3]

Needs the whole system (`make up`; started here if not running, and stopped again afterwards).

- **async**: the real order API (`python -m order_service` of `make up`, :8000) with the real consumers
  (accounting, inventory, shipping, the order view, recommend) running: `POST /orders` answers 202 once
  `OrderPlaced` is acknowledged by Kafka.
- **sync**: `bench/sync_shop.py front`: validates the same body, then calls the accounting and shipping
  stand-ins over HTTP (`sync_shop.py accounting|shipping`, making the decisions with the services' own
  `decide` functions) one after the other and answers 201 with both decisions, 503 if one fails.

Scenarios (the downstream is shipping in both arms):
- **healthy**: everything up;
- **slow**: one downstream adds `--delay-ms` (200): the sync stand-in answers each call that much later;
  in the async arm the real shipping service is restarted under `bench/slow_consumer.py`, which hands it
  every batch that much later (it is restarted normally at the end);
- **down**: the sync arm's shipping stand-in is not started; the async arm's shipping service is stopped
  (and started again at the end, when it works through what it missed).

Each round sends `rate` x `duration` real invoices (bodies pre-generated, `Idempotency-Key` per request)
with bench/loadgen.py in open loop, pinned to the generator CPU; latency counts from each request's
intended send time. The order API and the sync front are pinned to the server CPUs during the run (the
order service's affinity is restored at the end); downstreams, Kafka and the registry run where the OS puts
them. Before each round the consumer groups have consumed everything (the groups of a degraded shipping
excepted), so each round starts from a quiet system. Arms interleaved (async, sync) x rounds.

After a degraded scenario, the async side's backlog is timed until shipping has caught up, and a sample of
the accepted orders is read back through `GET /orders/{id}` until final (dispatched or cancelled).
Writes bench/results/async_vs_sync_<scenario>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchlib
import httpx

CORE_GROUPS = ("order-view", "accounting", "inventory", "shipping")
SCENARIOS = ("healthy", "slow", "down")


def success_rate(statuses: list[int]) -> float:
    return sum(1 for s in statuses if 200 <= s < 300) / len(statuses) if statuses else 0.0


class Thesis:
    def __init__(self, args: argparse.Namespace) -> None:
        from eventshop_tools import stack

        self.args = args
        self.stack = stack
        self.scenario = args.scenario
        self.tag = benchlib.run_id()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-thesis-"))
        count = int(args.rate * args.duration)
        self.orders = benchlib.real_orders(count, args.data)
        self.bodies = self.tmp / "bodies.jsonl"
        self.bodies.write_text("".join(json.dumps(o.body(), separators=(",", ":")) + "\n" for o in self.orders))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.slow_shipping: subprocess.Popen[bytes] | None = None
        self.order_affinity: set[int] | None = None
        self.degraded = self.scenario != "healthy"

    # -- the arms' processes ---------------------------------------------------------------------------
    def start_sync(self) -> str:
        ports = {name: benchlib.free_port() for name in ("accounting", "shipping", "front")}
        self.procs["sync-accounting"] = benchlib.start_server(
            "sync-accounting", benchlib.python_cmd("sync_shop.py", "accounting", "--port", str(ports["accounting"])),
            ports["accounting"],
        )  # fmt: skip
        if self.scenario != "down":
            delay = self.args.delay_ms if self.scenario == "slow" else 0
            self.procs["sync-shipping"] = benchlib.start_server(
                "sync-shipping",
                benchlib.python_cmd("sync_shop.py", "shipping", "--port", str(ports["shipping"]),
                                    "--delay-ms", str(delay)),
                ports["shipping"],
            )  # fmt: skip
        front = benchlib.python_cmd(
            "sync_shop.py", "front", "--port", str(ports["front"]),
            "--accounting", f"http://127.0.0.1:{ports['accounting']}",
            "--shipping", f"http://127.0.0.1:{ports['shipping']}",
        )  # fmt: skip
        self.procs["sync-front"] = benchlib.start_server(
            "sync-front", front, ports["front"], cpu_list=benchlib.server_cpus()
        )
        return f"http://127.0.0.1:{ports['front']}/orders"

    def async_url(self) -> str:
        order = self.stack.component("order")
        pid = order.pid()
        if pid is not None:
            self.order_affinity = benchlib.pin(pid, benchlib.server_cpus())
        else:
            print("  (the order service was not started by the stack: not pinned)", flush=True)
        return f"{order.url}/orders"

    def degrade_async(self) -> None:
        shipping = self.stack.component("shipping")
        self.stack.stop(shipping)
        if self.scenario == "slow":
            env = {**shipping.env, "LOG_LEVEL": "INFO"}
            self.slow_shipping = benchlib.start_server(
                "slow-shipping",
                benchlib.python_cmd("slow_consumer.py", "shipping_service", "--delay-ms", str(self.args.delay_ms)),
                int(shipping.env["PORT"]),
                env=env,
            )

    def restore_async(self) -> None:
        if self.slow_shipping is not None:
            benchlib.stop_process(self.slow_shipping)
            self.slow_shipping = None
        shipping = self.stack.component("shipping")
        if shipping.pid() is None:
            self.stack.start(shipping)
        order = self.stack.component("order")
        if self.order_affinity is not None and order.pid() is not None:
            benchlib.pin(order.pid(), self.order_affinity)
            self.order_affinity = None

    def stop_sync(self) -> None:
        for proc in self.procs.values():
            benchlib.stop_process(proc)
        self.procs.clear()

    # -- measuring -------------------------------------------------------------------------------------
    def pids(self, arm: str) -> list[int]:
        if arm == "sync":
            return [p.pid for p in self.procs.values() if p.poll() is None]
        names = ("order", "accounting", "inventory", "shipping")
        found = [pid for pid in (self.stack.component(n).pid() for n in names) if pid is not None]
        if self.slow_shipping is not None:
            found.append(self.slow_shipping.pid)
        return found

    def groups(self) -> tuple[str, ...]:
        return tuple(g for g in CORE_GROUPS if not (self.degraded and g == "shipping"))

    def load(self, arm: str, url: str, i: int) -> dict[str, Any]:
        benchlib.wait_drained(self.groups(), timeout=120)
        prefix = f"bench-{self.tag}-{self.scenario}-{arm}-{i}-"
        config = {"url": url, "bodies": str(self.bodies), "mode": "open", "rate": self.args.rate,
                  "duration": self.args.duration, "key_prefix": prefix, "timeout": self.args.timeout}  # fmt: skip
        config_file = self.tmp / f"{arm}-{i}.json"
        config_file.write_text(json.dumps(config))
        pids = self.pids(arm)
        cpu0 = sum(_cpu(p) for p in pids)
        result = benchlib.run_json(
            benchlib.python_cmd("loadgen.py", str(config_file), cpu_list=benchlib.generator_cpus()),
            timeout=self.args.duration + self.args.timeout + 120,
        )
        drained = benchlib.wait_drained(self.groups(), timeout=120)
        cpu = sum(_cpu(p) for p in pids) - cpu0
        latency, statuses = result["latency_ms"], result["status"]
        summary = {
            "arm": arm,
            "round": i,
            "key_prefix": prefix,
            "sent": len(statuses),
            "success": success_rate(statuses),
            "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "latency": benchlib.latency_summary(latency),
            "send_lag_p99_ms": benchlib.percentile(result["send_lag_ms"], 99),
            "errors": result["errors"],
            "server_cpu_ms_per_request": cpu / len(statuses) * 1000,
            "drain_after_s": drained,
            "generator_cpu_s": result["generator_cpu_s"],
        }
        lat = summary["latency"]
        print(
            f"  {self.scenario:<7} {arm:<5} round {i}: p50 {lat['p50_ms']:7.1f} ms  p99 {lat['p99_ms']:7.1f} ms  "
            f"success {summary['success']:6.1%}  server CPU {summary['server_cpu_ms_per_request']:5.1f} ms/req  "
            f"{summary['statuses']}",
            flush=True,
        )
        return summary

    def read_back(self, rounds: list[dict[str, Any]]) -> dict[str, Any]:
        """After a degraded async arm: how long shipping took to catch up, and whether a sample of the
        accepted orders became final."""
        from order_service.app import order_id_for

        began = time.monotonic()
        benchlib.wait_drained(CORE_GROUPS, timeout=180)
        catch_up = time.monotonic() - began
        ids = []
        for r in (r for r in rounds if r["arm"] == "async"):
            for i in range(0, r["sent"], max(1, r["sent"] // 40)):
                order = self.orders[i % len(self.orders)]
                ids.append(order_id_for(order.customer_id, f"{r['key_prefix']}{i}"))
        final = asyncio.run(_await_final(self.stack.component("order").url, ids, timeout=60))
        return {"catch_up_s": round(catch_up, 1), "sampled_orders": len(ids), "final": final}

    def run(self) -> dict[str, Any]:
        async_url = self.async_url()
        sync_url = self.start_sync()
        rounds: list[dict[str, Any]] = []
        after: dict[str, Any] = {}
        try:
            if self.degraded:
                self.degrade_async()
            arms = [
                ("async", lambda i: self.load("async", async_url, i)),
                ("sync", lambda i: self.load("sync", sync_url, i)),
            ]
            results = benchlib.interleave(arms, self.args.rounds)
            rounds = [r for pair in zip(results["async"], results["sync"], strict=True) for r in pair]
        finally:
            self.stop_sync()
            self.restore_async()
        if self.degraded:
            after = self.read_back(rounds)
            print(f"  after restoring shipping: caught up in {after['catch_up_s']} s; "
                  f"{after['final']}/{after['sampled_orders']} sampled accepted orders final", flush=True)  # fmt: skip
        return summarize(self.scenario, self.args, results, after, rounds)


def _cpu(pid: int) -> float:
    try:
        return benchlib.cpu_seconds(pid)
    except OSError:
        return 0.0


async def _await_final(base: str, order_ids: list[str], timeout: float) -> int:
    pending = set(order_ids)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while pending and time.monotonic() < deadline:
            for order_id in list(pending):
                response = await client.get(f"/orders/{order_id}")
                if response.status_code == 200 and response.json()["status"] != "pending":
                    pending.discard(order_id)
            if pending:
                await asyncio.sleep(1)
    return len(order_ids) - len(pending)


def summarize(
    scenario: str, args: argparse.Namespace, results: dict[str, list[dict[str, Any]]], after: dict[str, Any],
    rounds: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    def col(arm: str, key: str) -> list[float]:
        return [r["latency"][key] if key.endswith("_ms") else r[key] for r in results[arm]]

    arms = {
        arm: {
            "p50_ms": benchlib.spread(col(arm, "p50_ms")),
            "p99_ms": benchlib.spread(col(arm, "p99_ms")),
            "success": benchlib.spread(col(arm, "success")),
            "server_cpu_ms_per_request": benchlib.spread(col(arm, "server_cpu_ms_per_request")),
        }
        for arm in ("async", "sync")
    }
    suffix = {"healthy": "healthy", "slow": "slow_downstream", "down": "downstream_down"}[scenario]
    ratios = {
        f"async_vs_sync_p99_{suffix}": benchlib.ratio(col("async", "p99_ms"), col("sync", "p99_ms")),
        f"async_vs_sync_p50_{suffix}": benchlib.ratio(col("async", "p50_ms"), col("sync", "p50_ms")),
    }
    rates = {}
    if scenario == "down":
        rates = {
            "async_success_downstream_down": arms["async"]["success"],
            "sync_success_downstream_down": arms["sync"]["success"],
        }
    goals = {
        "slow": {"async_vs_sync_p99_slow_downstream": "<= 0.05"},
        "down": {"async_success_downstream_down": "= 1.0 (100%)"},
    }.get(scenario, {})
    return {
        "scenario": scenario,
        "config": {
            "rate_per_s": args.rate,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "delay_ms": args.delay_ms if scenario == "slow" else 0,
            "timeout_s": args.timeout,
            "downstream": "shipping",
            "requests_per_round": int(args.rate * args.duration),
        },
        "arms": arms,
        "ratios": ratios,
        "success_rates": rates,
        "after_restore": after,
        "goal": goals,
        "rounds": rounds,
    }


def table(result: dict[str, Any]) -> str:
    a = result["arms"]
    rows = []
    for arm, label in (("async", "async (202 after Kafka ack)"), ("sync", "sync (HTTP calls before answering)")):
        rows.append(
            f"| {label} | {benchlib.fmt_spread(a[arm]['p50_ms'], 1)} | {benchlib.fmt_spread(a[arm]['p99_ms'], 1)} "
            f"| {benchlib.fmt_spread({k: v * 100 for k, v in a[arm]['success'].items()}, 1)} "
            f"| {benchlib.fmt_spread(a[arm]['server_cpu_ms_per_request'], 1)} |"
        )
    config = result["config"]
    lines = [
        f"scenario **{result['scenario']}**, {config['rate_per_s']:g} req/s open loop, "
        f"{config['duration_s']:g} s x {config['rounds']} rounds per arm",
        "",
        "| arm | p50 ms | p99 ms | success % | server CPU ms/request |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    for key, value in {**result["ratios"], **result["success_rates"]}.items():
        lines.append(f"- `{key}`: {benchlib.fmt_ratio(value, 3)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=SCENARIOS, default="healthy")
    parser.add_argument("--rate", type=float, default=30.0, help="requests per second, open loop")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=200.0, help="what the slow downstream adds")
    parser.add_argument("--timeout", type=float, default=10.0, help="a request not answered by then failed")
    parser.add_argument("--data", type=Path, default=benchlib.DEFAULT_DATA)
    args = parser.parse_args(argv)
    return benchlib.run_and_report(f"async_vs_sync_{args.scenario}", lambda: Thesis(args).run(), table, services=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
