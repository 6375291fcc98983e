"""The recommend scorer, orders/s: the Faust stream app vs a plain confluent-kafka consumer, same scores.

    uv run python bench/recommend_scorer.py [--orders 1000] [--rounds 3] [--batch-max 500] [--batch-within 0.5]

Needs Kafka and the registry (`make up` or `make infra`). Both arms run `recommend_service.model`
(the same pure scoring) over the same real orders (the first UCI Online Retail invoices, placed_at one
second apart), each as its own process on its own topics (created here as bench-rec-<run>.*, deleted at
the end; schemas are the catalogue's):

- **faust**: `python -m recommend_service.worker` with RECOMMEND_TOPICS pointing at the bench topics:
  tables backed by changelog topics, outputs confirmed per batch;
- **plain**: this file's `plain_arm`: a confluent-kafka consumer, dicts instead of tables (no changelog),
  the same batches (up to --batch-max orders), the same outputs, flushed per batch.

Rounds are interleaved (faust, plain, faust, plain, ...). Throughput = orders / (when the last batch's
outputs were confirmed - when the first order arrived), so start-up and table recovery are not counted.
After the orders, every customer and the popular list are refreshed through each arm's refresh topic;
then the last list per key of every arm must be identical (products, customers, popular: sku, score).
Prints a markdown table and writes bench/results/recommend_scorer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from eventkit.catalogue import Catalogue, load_catalogue
from eventkit.events import (
    Event,
    LineItem,
    OrderPlaced,
    RecommendationRefreshRequested,
    utcnow,
)
from eventkit.serde import AvroCodec
from eventkit.settings import KafkaSettings
from eventshop_tools.replay import default_data
from recommend_service.model import POPULAR_SCOPE, RecommendationState, comparable
from recommend_service.topics import RecommendTopics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "recommend_scorer.json"
DEFAULT_DATA = default_data()
NS = uuid.UUID("7d0c1e5a-2b6f-4f0e-9c1d-3a8b5e7f9012")


# -- the plain arm (run as a subprocess: `recommend_scorer.py --plain-arm CONFIG_JSON`) ----------------
def plain_arm(config: dict[str, Any]) -> dict[str, Any]:
    settings = KafkaSettings()
    catalogue = load_catalogue(settings.schemas_dir)
    codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
    topics = RecommendTopics.from_catalogue(catalogue, config["topics"])
    out_topic = {t.spec.value: t for t in topics.caches}
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": config["group"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": True,
        }
    )
    state = RecommendationState({}, {}, {}, {})
    expected_orders, expected_refreshes = config["orders"], config["refreshes"]
    received = refreshes = published = batches = 0
    scoring_seconds = 0.0
    first_order_at = last_batch_done_at = None

    def publish(events: list[Event]) -> None:
        nonlocal published
        for event in events:
            topic = out_topic[event.RECORD]
            producer.produce(topic.name, key=event.key.encode(), value=codec.encode(topic.spec.name, event))
            producer.poll(0)
        if producer.flush(30):
            raise RuntimeError("outputs not confirmed")
        published += len(events)

    consumer.subscribe([topics.orders.name])
    while received < expected_orders:
        batch = [m for m in consumer.consume(config["batch_max"], timeout=config["batch_within"]) if not m.error()]
        if not batch:
            continue
        if first_order_at is None:
            first_order_at = time.time()
        orders = [e for e in (codec.decode(m.value()) for m in batch) if isinstance(e, OrderPlaced)]
        began = time.perf_counter()
        outputs = state.outputs(state.apply(orders))
        scoring_seconds += time.perf_counter() - began
        publish(outputs)
        batches += 1
        for m in batch:
            consumer.store_offsets(message=m)
        received += len(batch)
        last_batch_done_at = time.time()
    consumer.unsubscribe()
    consumer.subscribe([topics.refresh.name])
    while refreshes < expected_refreshes:
        for m in consumer.consume(500, timeout=0.2):
            if m.error():
                continue
            request = codec.decode(m.value())
            assert isinstance(request, RecommendationRefreshRequested)
            answer = state.refresh(request)
            if answer is not None:
                publish([answer])
            refreshes += 1
    consumer.close()
    return {
        "orders_received": received,
        "first_order_at": first_order_at,
        "last_batch_done_at": last_batch_done_at,
        "published": published,
        "refreshes": refreshes,
        "batches": batches,
        "scoring_seconds": scoring_seconds,
    }


# -- the driver ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_orders(data: Path, count: int) -> list[OrderPlaced]:
    from eventshop_tools.replay import load_orders

    replay, _ = load_orders(data, limit=count * 2)
    start = datetime(2011, 1, 4, 9, tzinfo=UTC)
    orders = []
    for i, o in enumerate(replay[:count]):
        when = start + timedelta(seconds=i)
        orders.append(
            OrderPlaced(
                event_id=str(uuid.uuid5(NS, f"e/{o.invoice_no}")),
                occurred_at=when,
                order_id=str(uuid.uuid5(NS, o.invoice_no)),
                customer_id=o.customer_id,
                currency="GBP",
                country=o.country,
                placed_at=when,
                items=tuple(
                    LineItem(
                        sku=x.sku, quantity=x.quantity, unit_price=Decimal(x.unit_price), description=x.description
                    )
                    for x in o.items
                ),
            )
        )
    return orders


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = KafkaSettings()
        self.catalogue: Catalogue = load_catalogue(self.settings.schemas_dir)
        self.codec = AvroCodec.connect(self.settings.schema_registry_url, self.catalogue)
        self.admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap_servers})
        self.run = uuid.uuid4().hex[:8]
        self.prefix = f"bench-rec-{self.run}"
        self.created: list[str] = []
        self.real = RecommendTopics.from_catalogue(self.catalogue)

    def create(self, specs: list[tuple[str, int, str]]) -> None:
        futures = self.admin.create_topics(
            [NewTopic(name, partitions, 1, config={"cleanup.policy": policy}) for name, partitions, policy in specs]
        )
        for name, future in futures.items():
            future.result()
            self.created.append(name)

    def arm_topics(self, label: str, with_changelogs: bool) -> dict[str, str]:
        """Catalogue name -> bench name for one arm-round (the orders topic is shared by all)."""
        mapping = {self.real.orders.spec.name: f"{self.prefix}.orders"}
        specs = []
        catalogued = [*self.real.caches, self.real.refresh]
        if with_changelogs:
            catalogued += list(self.real.changelogs.values())
        for topic in catalogued:
            name = f"{self.prefix}.{label}.{topic.spec.name.removeprefix('recommend.')}"
            mapping[topic.spec.name] = name
            specs.append((name, topic.spec.partitions, topic.spec.cleanup_policy))
        self.create(specs)
        return mapping

    def fill(self, orders: list[OrderPlaced]) -> None:
        self.create([(f"{self.prefix}.orders", self.real.orders.spec.partitions, "delete")])
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "linger.ms": 20})
        for order in orders:
            producer.produce(
                f"{self.prefix}.orders",
                key=order.key.encode(),
                value=self.codec.encode(self.real.orders.spec.name, order),
            )
            producer.poll(0)
        assert producer.flush(60) == 0

    def ask_refreshes(self, topic: str, customers: list[str]) -> int:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers, "linger.ms": 20})
        targets = [("customer", c) for c in customers] + [("popular", POPULAR_SCOPE)]
        for kind, target in targets:
            event = RecommendationRefreshRequested(
                event_id=str(uuid.uuid4()), occurred_at=utcnow(), kind=kind, target=target
            )
            producer.produce(topic, key=target.encode(), value=self.codec.encode(self.real.refresh.spec.name, event))
            producer.poll(0)
        assert producer.flush(60) == 0
        return len(targets)

    def latest(self, mapping: dict[str, str]) -> dict[tuple[str, str], Any]:
        """The last list per (record, key) on an arm's three cache topics."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "group.id": f"{self.prefix}-reader-{uuid.uuid4().hex[:6]}",
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
        names = [mapping[t.spec.name] for t in self.real.caches]
        parts = [TopicPartition(n, p, OFFSET_BEGINNING) for n in names for p in range(self.partitions_of(n))]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        found: dict[tuple[str, str], Any] = {}
        while pending:
            for m in consumer.consume(1000, timeout=1):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard((m.topic(), m.partition()))
                    continue
                record, key, items = comparable(self.codec.decode(m.value()))  # type: ignore[arg-type]
                found[(record, key)] = items
        consumer.close()
        return found

    def partitions_of(self, topic: str) -> int:
        return len(self.admin.list_topics(topic, timeout=10).topics[topic].partitions)

    def faust_round(self, label: str, orders: int, customers: list[str]) -> dict[str, Any]:
        mapping = self.arm_topics(label, with_changelogs=True)
        port = free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "RECOMMEND_APP_ID": f"{self.prefix}-{label}",
            "RECOMMEND_TOPICS": json.dumps(mapping),
            "RECOMMEND_BATCH_MAX": str(self.args.batch_max),
            "RECOMMEND_BATCH_WITHIN": str(self.args.batch_within),
            "LOG_LEVEL": "WARNING",
            **dict(kv.split("=", 1) for kv in self.args.faust_env),
        }
        log = (ROOT / ".run" / "logs" / f"bench-recommend-{label}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "recommend_service.worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            stats = self.wait_health(proc, port, lambda s: s["orders_done"] >= orders)
            refreshes = self.ask_refreshes(mapping[self.real.refresh.spec.name], customers)
            self.wait_health(proc, port, lambda s: s["refreshes_served"] + s["refreshes_skipped"] >= refreshes)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        return {"mapping": mapping, **stats}

    def wait_health(self, proc: subprocess.Popen[bytes], port: int, done: Any) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"the Faust worker exited with {proc.returncode}; see .run/logs/bench-recommend-*.log"
                )
            try:
                stream = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["stream"]
                if done(stream):
                    return dict(stream)
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("the Faust worker did not finish within 120 s")

    def plain_round(self, label: str, orders: int, customers: list[str]) -> dict[str, Any]:
        mapping = self.arm_topics(label, with_changelogs=False)
        config = {
            "topics": mapping,
            "group": f"{self.prefix}-{label}",
            "orders": orders,
            "refreshes": len(customers) + 1,
            "batch_max": self.args.batch_max,
            "batch_within": self.args.batch_within,
        }
        # the refresh requests wait on their topic until the plain arm has done the orders
        self.ask_refreshes(mapping[self.real.refresh.spec.name], customers)
        out = subprocess.run(
            [sys.executable, __file__, "--plain-arm", json.dumps(config)], capture_output=True, text=True, timeout=180
        )
        if out.returncode != 0:
            raise RuntimeError(f"plain arm failed: {out.stderr[-2000:]}")
        return {"mapping": mapping, **json.loads(out.stdout.strip().splitlines()[-1])}

    def cleanup(self) -> None:
        if self.created:
            for future in self.admin.delete_topics(self.created, operation_timeout=30).values():
                try:
                    future.result()
                except Exception as exc:  # best effort
                    print(f"could not delete a bench topic: {exc}", file=sys.stderr)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-max", type=int, default=500)
    parser.add_argument("--batch-within", type=float, default=0.5, help="seconds a batch waits to fill up")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--faust-env", action="append", default=[], help="KEY=VALUE for the Faust worker (variants)")
    parser.add_argument("--plain-arm", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_arm:
        print(json.dumps(plain_arm(json.loads(args.plain_arm))))
        return 0

    began = time.monotonic()
    bench = Bench(args)
    orders = bench_orders(args.data, args.orders)
    customers = sorted({o.customer_id for o in orders})
    lines = sum(len(o.items) for o in orders)
    print(f"{len(orders)} real orders ({lines} lines, {len(customers)} customers); topics {bench.prefix}.*", flush=True)
    rounds: list[dict[str, Any]] = []
    try:
        bench.fill(orders)
        for i in range(args.rounds):
            for arm, run in (("faust", bench.faust_round), ("plain", bench.plain_round)):
                label = f"{arm}{i}"
                stats = run(label, len(orders), customers)
                elapsed = stats["last_batch_done_at"] - stats["first_order_at"]
                rate = len(orders) / elapsed
                lists = bench.latest(stats["mapping"])
                rounds.append(
                    {
                        "arm": arm,
                        "round": i,
                        "seconds": elapsed,
                        "orders_per_s": rate,
                        "batches": stats["batches"],
                        "scoring_seconds": stats["scoring_seconds"],
                        "lists": lists,
                    }
                )
                print(
                    f"  {label:<7} {rate:8.1f} orders/s  ({elapsed:.2f} s, {stats['batches']} batches, "
                    f"scoring {stats['scoring_seconds']:.2f} s, {len(lists)} lists)",
                    flush=True,
                )
    finally:
        bench.cleanup()
    reference = rounds[0]["lists"]
    same = all(r["lists"] == reference for r in rounds)
    kinds = {record for record, _ in reference}
    counts = {record: sum(1 for r, _ in reference if r == record) for record in sorted(kinds)}
    mismatched = sorted(
        {key for r in rounds for key in set(r["lists"]) | set(reference) if r["lists"].get(key) != reference.get(key)}
    )
    rates = {arm: [r["orders_per_s"] for r in rounds if r["arm"] == arm] for arm in ("faust", "plain")}
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "orders": len(orders),
        "lines": lines,
        "customers": len(customers),
        "batch_max": args.batch_max,
        "batch_within": args.batch_within,
        "faust_env": args.faust_env,
        "rounds": [{k: v for k, v in r.items() if k != "lists"} for r in rounds],
        "orders_per_s": {arm: summary(v) for arm, v in rates.items()},
        "ratio_faust_to_plain": statistics.median(rates["faust"]) / statistics.median(rates["plain"]),
        "outputs_identical": same,
        "lists_compared": counts,
        "mismatched_keys": [list(k) for k in mismatched[:20]],
        "wall_seconds": time.monotonic() - began,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| arm | orders/s median | min-max | rounds |")
    print("|---|---:|---:|---:|")
    for arm, s in result["orders_per_s"].items():
        print(f"| {arm} | {s['median']:.1f} | {s['min']:.1f}-{s['max']:.1f} | {len(rates[arm])} |")
    print()
    print(
        f"faust / plain = {result['ratio_faust_to_plain']:.2f}; outputs identical across all rounds: {same} "
        f"({', '.join(f'{n} {k}' for k, n in counts.items())}); {result['wall_seconds']:.0f} s; {RESULTS}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
