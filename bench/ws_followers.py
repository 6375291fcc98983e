"""1,000 WebSocket followers on one order-service process while real orders flow.

    uv run python bench/ws_followers.py [--followers 1000] [--per-order 5] [--rate 40] [--data FILE]

Needs Kafka, the registry and the downstream services (`make up`; started here if not running, and
stopped again afterwards). Starts a dedicated order-service instance (INSTANCE_ID=bench, its own port,
consumer group and store under .run/bench/, kept between runs so a re-run only catches up), then:

1. computes the ids of `followers / per-order` orders before placing them (an Idempotency-Key fixes the
   id), and opens `per-order` WebSocket followers on each: the instance waits for an order it has not
   heard of yet (PUSH_UNKNOWN_WAIT_SECONDS), so all followers are connected and idle at once;
2. memory per connection = (server RSS with every follower connected - RSS before) / followers;
3. places the orders (real UCI Online Retail invoices) at `--rate` per second; every follower records,
   for each entry, now - occurred_at (event -> client); for every 10th order a poller GETs
   /orders/{id} every 25 ms and records when each event first shows (event -> plain view update);
4. checks that every follower of an order got the same entries, each once, then `final`.
Clients ask for permessage-deflate like browsers do (`--compression none` to compare).

Prints a markdown table and writes bench/results/ws_followers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import benchlib
import httpx
import websockets

from eventshop_tools import stack
from eventshop_tools.replay import default_data, load_orders
from order_service.app import order_id_for

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "ws_followers.json"
DEFAULT_DATA = default_data()
INSTANCE_ID = "bench"
VIEW_GROUP = f"order-view-{INSTANCE_ID}"
POLL_INTERVAL = 0.025


@dataclass
class Follower:
    order_id: str
    ids: list[str] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)  # parallel to ids
    types: list[str] = field(default_factory=list)  # parallel to ids
    final: dict[str, Any] | None = None
    close_code: int | None = None
    error: str | None = None


def occurred(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["occurred_at"]).timestamp()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]  # nearest rank


def raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_instance(port: int) -> subprocess.Popen[bytes]:
    state = stack.RUN / "bench" / "order-state"
    state.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack.BOOTSTRAP,
        "SCHEMA_REGISTRY_URL": stack.REGISTRY_URL,
        "STATE_DIR": str(state),
        "PORT": str(port),
        "INSTANCE_ID": INSTANCE_ID,
        "PUSH_UNKNOWN_WAIT_SECONDS": "120",
        "LOG_LEVEL": "WARNING",
    }
    log = (state.parent / "order-bench.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "order_service"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )


async def wait_until(probe, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = await probe()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        await asyncio.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


async def follow(base: str, follower: Follower, connected: asyncio.Event, compression: str | None) -> None:
    url = base.replace("http://", "ws://") + f"/orders/{follower.order_id}/events"
    try:
        async with websockets.connect(url, open_timeout=30, max_queue=64, compression=compression) as ws:
            connected.set()
            async for raw in ws:
                received = time.time()
                message = json.loads(raw)
                if message.get("final"):
                    follower.final = message
                elif message["type"] != "ping":
                    follower.ids.append(message["event_id"])
                    follower.types.append(message["type"])
                    follower.delays_ms.append((received - occurred(message)) * 1000)
            follower.close_code = ws.close_code
    except Exception as exc:  # recorded and reported, never hidden
        follower.error = f"{type(exc).__name__}: {exc}"
        connected.set()


async def poll_view(client: httpx.AsyncClient, order_id: str, delays_ms: dict[str, float], until: float) -> None:
    while time.monotonic() < until:
        try:
            response = await client.get(f"/orders/{order_id}")
        except httpx.TransportError:  # a keep-alive connection the server closed as it was reused
            continue
        now = time.time()
        if response.status_code == 200:
            body = response.json()
            for entry in body["timeline"]:
                if entry["event_id"] not in delays_ms:
                    delays_ms[entry["event_id"]] = (now - occurred(entry)) * 1000
            if body["status"] != "pending":
                return
        await asyncio.sleep(POLL_INTERVAL)


def order_bodies(data: Path, count: int) -> list[tuple[str, dict[str, Any]]]:
    """(invoice number, POST body) of real invoices, repeated if the file gives fewer than `count`."""
    if data.exists():
        orders, _ = load_orders(data, limit=int(count * 1.3) + 20)
        bodies = [(o.invoice_no, o.body()) for o in orders]
    else:
        print(f"(no {data}: using small synthetic orders)")
        line = {"sku": "85123A", "quantity": 1, "unit_price": "2.55"}
        bodies = [(f"S{n}", {"customer_id": f"bench-{n}", "currency": "GBP", "items": [line]}) for n in range(count)]
    return [bodies[n % len(bodies)] for n in range(count)]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    n_orders = args.followers // args.per_order
    run_id = uuid.uuid4().hex[:8]
    invoices = order_bodies(args.data, n_orders)
    keyed = [(f"bench-{run_id}-{n}-{inv}", body) for n, (inv, body) in enumerate(invoices)]
    order_ids = [order_id_for(body["customer_id"], key) for key, body in keyed]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_instance(port)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            await wait_until(lambda: _health(client), 60, "the bench order-service instance")
            # Warm-up: one order through the instance, final once the instance has caught up with history.
            warm = (await client.post("/orders", json=keyed[0][1] | {"customer_id": f"warm-{run_id}"})).json()
            caught_up = time.monotonic()
            await wait_until(lambda: _final(client, warm["order_id"]), 120, "the instance to catch up")
            # The warm order can be final while other topics' history is still being read (a group that
            # kept offsets from an earlier run backfills what came since): measure from lag 0.
            await asyncio.to_thread(benchlib.wait_drained, [VIEW_GROUP], 180)
            print(f"instance up and caught up ({time.monotonic() - caught_up:.1f}s); {n_orders} orders, "
                  f"{args.followers} followers")  # fmt: skip
            await asyncio.sleep(1)
            rss_before, cpu_before, load_before = rss_kib(proc.pid), cpu_seconds(proc.pid), os.getloadavg()[0]

            followers = [Follower(oid) for oid in order_ids for _ in range(args.per_order)]
            began_connecting = time.monotonic()
            tasks = []
            for batch in range(0, len(followers), 100):
                events = []
                for f in followers[batch : batch + 100]:
                    connected = asyncio.Event()
                    events.append(connected)
                    tasks.append(asyncio.create_task(follow(base, f, connected, args.compression)))
                await asyncio.gather(*(e.wait() for e in events))
            await wait_until(
                lambda: _followers(client, args.followers), 60, f"{args.followers} followers on the server", 0.1
            )
            connect_s = time.monotonic() - began_connecting
            await asyncio.sleep(1)
            rss_held = rss_kib(proc.pid)
            peak_followers = (await client.get("/health")).json()["push"]["followers"]

            # Orders flow.
            view_delays: dict[str, float] = {}  # event id -> ms
            pollers: list[asyncio.Task[None]] = []
            began = time.monotonic()

            async def place(n: int, key: str, body: dict[str, Any]) -> None:
                for _ in range(5):  # a 503 (broker busy) is retried with the same key, as clients should
                    response = await client.post("/orders", json=body, headers={"Idempotency-Key": key})
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(1)
                if response.status_code != 202:
                    raise SystemExit(f"order refused: {response.status_code} {response.text[:200]}")
                if args.poll_every and n % args.poll_every == 0:
                    pollers.append(asyncio.create_task(poll_view(client, order_ids[n], view_delays, began + 90)))

            posts = []
            for n, (key, body) in enumerate(keyed):  # open loop: on schedule, whatever the answers take
                await asyncio.sleep(max(0.0, began + n / args.rate - time.monotonic()))
                posts.append(asyncio.create_task(place(n, key, body)))
            await asyncio.gather(*posts)
            sending_s = time.monotonic() - began
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)
            flow_s = time.monotonic() - began
            await asyncio.gather(*pollers)
            cpu_used = cpu_seconds(proc.pid) - cpu_before
            health = (await client.get("/health")).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    return summarize(args, followers, order_ids, view_delays, {
        "rss_before_kib": rss_before, "rss_held_kib": rss_held, "peak_followers": peak_followers,
        "connect_s": connect_s, "sending_s": sending_s, "flow_s": flow_s, "server_cpu_s": cpu_used,
        "dropped_slow": health["push"]["dropped_slow"], "run_id": run_id, "load": [load_before, os.getloadavg()[0]],
        "server_view_lag": health["push"]["view_lag_ms"], "server_push_lag": health["push"]["push_lag_ms"],
    })  # fmt: skip


async def _health(client: httpx.AsyncClient) -> bool:
    return (await client.get("/health")).status_code == 200


async def _final(client: httpx.AsyncClient, order_id: str) -> bool:
    response = await client.get(f"/orders/{order_id}")
    return response.status_code == 200 and response.json()["status"] != "pending"


async def _followers(client: httpx.AsyncClient, expected: int) -> bool:
    return int((await client.get("/health")).json()["push"]["followers"]) >= expected


def summarize(
    args: argparse.Namespace,
    followers: list[Follower],
    order_ids: list[str],
    view_delays: dict[str, float],
    measured: dict[str, Any],
) -> dict[str, Any]:
    errors = [f.error for f in followers if f.error]
    by_order: dict[str, list[Follower]] = {}
    for f in followers:
        by_order.setdefault(f.order_id, []).append(f)
    consistent = sum(
        1
        for group in by_order.values()
        if all(f.ids == group[0].ids and f.final == group[0].final and len(set(f.ids)) == len(f.ids) for f in group)
    )
    finals = [f for f in followers if f.final is not None]
    push = [d for f in followers for d in f.delays_ms]
    sampled = {order_ids[n] for n in range(0, len(order_ids), args.poll_every)} if args.poll_every else set()
    push_sampled = [d for f in followers if f.order_id in sampled for d in f.delays_ms]
    # Per event of the polled orders: how much earlier than the view's poll did each follower get it?
    ahead = [view_delays[i] - d for f in followers for i, d in zip(f.ids, f.delays_ms, strict=True) if i in view_delays]
    per_conn = (measured["rss_held_kib"] - measured["rss_before_kib"]) / len(followers)

    def stats(values: list[float]) -> dict[str, Any]:
        return {
            "n": len(values),
            "p50_ms": _round(percentile(values, 50)),
            "p99_ms": _round(percentile(values, 99)),
            "mean_ms": _round(statistics.fmean(values)) if values else None,
            "max_ms": _round(max(values)) if values else None,
        }

    return {
        "benchmark": "ws_followers",
        "when": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_before_after": measured["load"],
        },
        "config": {
            "followers": len(followers),
            "orders": len(order_ids),
            "per_order": args.per_order,
            "rate_per_s": args.rate,
            "view_poll_interval_ms": POLL_INTERVAL * 1000,
            "view_polled_orders": len(sampled),
        },
        "memory": {
            "rss_before_mib": round(measured["rss_before_kib"] / 1024, 1),
            "rss_with_followers_mib": round(measured["rss_held_kib"] / 1024, 1),
            "per_connection_kib": round(per_conn, 1),
        },
        "push_delay_all": stats(push),
        "push_delay_polled_orders": stats(push_sampled),
        "view_delay_polled_orders": stats(list(view_delays.values())),
        "push_ahead_of_view_same_event": stats(ahead),
        # Measured in the server (its clock = the services' clock): event occurred -> timeline row committed
        # (from then on GET shows it), and row committed -> message handed to a follower's socket.
        "server_event_to_commit_ms": measured["server_view_lag"],
        "server_commit_to_socket_ms": measured["server_push_lag"],
        "push_delay_by_type": {
            kind: stats([d for f in followers for t, d in zip(f.types, f.delays_ms, strict=True) if t == kind])
            for kind in sorted({t for f in followers for t in f.types})
        },
        "delivery": {
            "peak_followers_on_server": measured["peak_followers"],
            "followers_with_final": len(finals),
            "closed_normally": sum(1 for f in followers if f.close_code == 1000),
            "orders_all_followers_identical": consistent,
            "dropped_slow": measured["dropped_slow"],
            "errors": errors[:5],
            "error_count": len(errors),
            "statuses": {
                s: sum(1 for f in finals if f.final and f.final["status"] == s) for s in ("dispatched", "cancelled")
            },
        },
        "timing_s": {k: round(measured[k], 2) for k in ("connect_s", "sending_s", "flow_s", "server_cpu_s")},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def pct(stats: dict[str, Any]) -> str:
    return f"{stats['p50_ms']} / {stats['p99_ms']} ms (n={stats['n']})"


def srv(stats: dict[str, Any]) -> str:
    return f"{stats['p50']} / {stats['p99']} ms (n={stats['n']})"


def table(result: dict[str, Any]) -> str:
    memory, delivery = result["memory"], result["delivery"]
    rows = [
        ("followers held at once (server count)", f"{delivery['peak_followers_on_server']}"),
        ("memory per connection (RSS delta / connections)", f"{memory['per_connection_kib']} KiB"),
        ("server RSS before / with all followers",
         f"{memory['rss_before_mib']} / {memory['rss_with_followers_mib']} MiB"),
        ("event -> WebSocket client, all events: p50 / p99",
         pct(result["push_delay_all"])),
        ("event -> WebSocket client, polled orders: p50 / p99",
         pct(result["push_delay_polled_orders"])),
        (f"event -> visible via GET (polled every {POLL_INTERVAL * 1000:g} ms): p50 / p99",
         pct(result["view_delay_polled_orders"])),
        ("server: event -> row committed (GET shows it from then): p50 / p99",
         srv(result["server_event_to_commit_ms"])),
        ("server: row committed -> handed to the socket: p50 / p99", srv(result["server_commit_to_socket_ms"])),
        ("push ahead of the view, same event: p50 / p99",
         pct(result["push_ahead_of_view_same_event"])),
        ("followers that got `final` / closed 1000",
         f"{delivery['followers_with_final']} / {delivery['closed_normally']}"),
        ("orders whose followers all got the same entries once",
         f"{delivery['orders_all_followers_identical']} / {result['config']['orders']}"),
        ("dropped as too slow / client errors", f"{delivery['dropped_slow']} / {delivery['error_count']}"),
        ("final statuses", ", ".join(f"{k} {v}" for k, v in delivery["statuses"].items())),
        ("orders sent / all final (s)", f"{result['timing_s']['sending_s']} / {result['timing_s']['flow_s']}"),
        ("server CPU during the flow (s)", f"{result['timing_s']['server_cpu_s']}"),
    ]  # fmt: skip
    lines = ["| measure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--followers", type=int, default=1000)
    parser.add_argument("--per-order", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40.0, help="orders placed per second")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--poll-every", type=int, default=10,
        help="poll the view of every n-th order (polling costs the server: keep it light; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--compression", choices=["deflate", "none"], default="deflate",
        help="permessage-deflate, as browsers ask for it (default), or none",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.compression = None if args.compression == "none" else args.compression
    raise_fd_limit(args.followers * 2 + 512)
    needed = ("kafka", "registry", "accounting", "inventory", "shipping")
    started = [] if all(stack.component(name).ready() for name in needed) else stack.up(with_services=True)
    try:
        result = asyncio.run(run(args))
    finally:
        for comp in reversed(started):
            stack.stop(comp)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    ok = (
        result["delivery"]["error_count"] == 0
        and result["delivery"]["orders_all_followers_identical"] == result["config"]["orders"]
        and result["delivery"]["followers_with_final"] == result["config"]["followers"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
