"""What every benchmark in bench/ shares: statistics, A/B interleaving, CPU pinning, the stack, topics, data.

Not a benchmark itself. Each bench module puts bench/ on sys.path by being run as a script
(`uv run python bench/<name>.py`), so `import benchlib` finds this file.

Conventions (also those of bench/recommend_scorer.py and bench/ws_followers.py):
- every figure that matters is a ratio of two arms measured in the same run, arms interleaved
  (A B A B A B); a ratio is reported as the median of the per-round ratios, with their min and max;
- the load generator (or the client under test) runs pinned to the last CPU, servers and the processes
  under test to the others (`taskset`), when the machine has more than one;
- topics made by a benchmark are called `bench.<x>` (or bench-rec-* for the recommend scorer), created
  with the AdminClient and deleted at the end; the product's topics stay in schemas/catalogue.toml;
- each module writes bench/results/<name>.json; bench/run_all.py (`make bench`) gathers them into
  bench/results/latest.json and latest.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from eventshop_tools.replay import default_data

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DEFAULT_DATA = default_data()
TOOLS_POM = BENCH / "kafka-tools.pom.xml"
TOPIC_PREFIX = "bench."
_NS = uuid.UUID("3c9b6f0e-5a1d-4e7b-8f2c-6d0a9e1b4c57")

T = TypeVar("T")


# -- statistics (pure; tests/unit/test_bench_stats.py) ------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    if not values:
        raise ValueError("percentile of an empty sample")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with min and max (and the count) of per-round figures."""
    if not values:
        raise ValueError("no values")
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round i of arm A over round i of arm B: the two were measured next to each other."""
    if len(numerators) != len(denominators):
        raise ValueError("arms have different numbers of rounds")
    return [a / b if b else math.inf for a, b in zip(numerators, denominators, strict=True)]


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, float]:
    """The per-round ratios' median, min and max."""
    return spread(paired_ratios(numerators, denominators))


def interleave(arms: Sequence[tuple[str, Callable[[int], T]]], rounds: int) -> dict[str, list[T]]:
    """Run each arm once per round, in order, round after round: A B A B A B (for two arms)."""
    results: dict[str, list[T]] = {name: [] for name, _ in arms}
    for i in range(rounds):
        for name, run in arms:
            results[name].append(run(i))
    return results


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"n": 0}
    return {
        "n": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms),
        "mean_ms": statistics.fmean(latencies_ms),
    }


def fmt_ratio(r: dict[str, float], digits: int = 2) -> str:
    return f"{r['median']:.{digits}f} ({r['min']:.{digits}f}-{r['max']:.{digits}f})"


def fmt_spread(s: dict[str, float], digits: int = 0, unit: str = "") -> str:
    return f"{s['median']:,.{digits}f}{unit} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


# -- the machine and the versions ---------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    from confluent_kafka import libversion

    from eventshop_tools import stack

    found = {
        "kafka": stack.KAFKA_VERSION,
        "apicurio_registry": stack.APICURIO_VERSION,
        "python": platform.python_version(),
        "confluent_kafka": metadata.version("confluent-kafka"),
        "librdkafka": libversion()[0],
    }
    for package in ("fastavro", "fastapi", "uvicorn", "pydantic", "faust-streaming", "aiohttp", "httpx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package.replace("-", "_")] = metadata.version(package)
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()
    found["java"] = java[0] if java else "?"
    return found


# -- CPU pinning --------------------------------------------------------------------------------------
def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def generator_cpus() -> list[int]:
    """Where load generators and clients under test run: the last CPU (all of them on a 1-CPU machine)."""
    mine = cpus()
    return mine[-1:] if len(mine) > 1 else mine


def server_cpus() -> list[int]:
    """Where servers under test run: every CPU but the generator's."""
    mine = cpus()
    return mine[:-1] if len(mine) > 1 else mine


def taskset(cpu_list: Iterable[int]) -> list[str]:
    """The command prefix that pins a child to `cpu_list` (nothing if taskset is missing)."""
    if not shutil.which("taskset"):
        return []
    return ["taskset", "-c", ",".join(map(str, cpu_list))]


def pin(pid: int, cpu_list: Iterable[int]) -> set[int]:
    """Pin a running process (every thread) to `cpu_list`; returns its previous CPU set."""
    before = os.sched_getaffinity(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
            os.sched_setaffinity(int(task.name), set(cpu_list))
    return before


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the runtime --------------------------------------------------------------------------------------
def ensure_stack(services: bool = True) -> list[Any]:
    """Start what is not running (Kafka, registry and, if asked, the services); returns what was started,
    for `stop_started`. Uses the same code as `make up`, so it picks up EVENTSHOP_RUN_DIR too."""
    from eventshop_tools import stack

    needed = [c.name for c in stack.infrastructure()]
    if services:
        needed += [c.name for c in stack.installed_services()]
    if all(stack.component(name).ready() for name in needed):
        return []
    return stack.up(with_services=services)


def stop_started(started: Sequence[Any]) -> None:
    from eventshop_tools import stack

    for comp in reversed(started):
        stack.stop(comp)


def kafka_settings():
    from eventkit.settings import KafkaSettings
    from eventshop_tools import stack

    return KafkaSettings(kafka_bootstrap_servers=stack.BOOTSTRAP, schema_registry_url=stack.REGISTRY_URL)


def run_id() -> str:
    return uuid.uuid4().hex[:8]


# -- topics and subjects ------------------------------------------------------------------------------
def bench_catalogue(topics: dict[str, str]):
    """The product catalogue plus bench topics (name -> Avro record), so eventkit's codec and producer
    accept them exactly as they accept the product's topics."""
    from eventkit.catalogue import TopicSpec, load_catalogue

    catalogue = load_catalogue(kafka_settings().schemas_dir)
    extra = tuple(
        TopicSpec(name=name, key="order_id", value=record, producer="bench", partitions=3, replication_factor=1,
                  cleanup_policy="delete", retention_ms=3_600_000, doc="benchmark topic")
        for name, record in topics.items()
    )  # fmt: skip
    return dataclasses.replace(catalogue, topics=catalogue.topics + extra)


def create_topics(names: dict[str, int], register: dict[str, str] | None = None) -> None:
    """Create `bench.*` topics (name -> partitions), deleting leftovers first; register `<topic>-value`
    subjects for the given name -> Avro record (through eventkit.provision.register, like `make schemas`)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from eventkit.provision import register as register_subject

    assert all(n.startswith(TOPIC_PREFIX) for n in names), "benchmark topics are named bench.*"
    settings = kafka_settings()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    existing = set(admin.list_topics(timeout=15).topics)
    delete_topics([n for n in names if n in existing])
    for _ in range(40):
        futures = admin.create_topics(
            [NewTopic(n, p, 1, config={"retention.ms": "3600000"}) for n, p in names.items()], operation_timeout=30
        )
        pending = False
        for future in futures.values():
            try:
                future.result()
            except Exception as exc:  # a just-deleted topic can still be marked for deletion for a moment
                if "marked for deletion" not in str(exc) and "already exists" not in str(exc):
                    raise
                pending = True
        if not pending:
            break
        time.sleep(0.5)
    if register:
        catalogue = bench_catalogue(register)
        registry = SchemaRegistryClient({"url": settings.schema_registry_url})
        for name, record in register.items():
            register_subject(registry, f"{name}-value", catalogue.schema_str(record))


def delete_topics(names: Sequence[str]) -> None:
    from confluent_kafka.admin import AdminClient

    if not names:
        return
    admin = AdminClient({"bootstrap.servers": kafka_settings().kafka_bootstrap_servers})
    for future in admin.delete_topics(list(names), operation_timeout=30).values():
        with contextlib.suppress(Exception):
            future.result()


def end_offsets(topics: Sequence[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kafka_settings().kafka_bootstrap_servers, "group.id": "bench-offsets"})
    try:
        metadata_ = consumer.list_topics(timeout=15)
        ends = {}
        for topic in topics:
            for p in metadata_.topics[topic].partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                ends[(topic, p)] = high
        return ends
    finally:
        consumer.close()


def group_lag(groups: Sequence[str]) -> dict[str, int]:
    """Messages each consumer group has not committed yet, over the topics it has offsets for."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": kafka_settings().kafka_bootstrap_servers})
    lag: dict[str, int] = {}
    for group in groups:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        try:
            committed = future.result().topic_partitions or []
        except Exception:
            lag[group] = 0
            continue
        ends = end_offsets(sorted({tp.topic for tp in committed}))
        lag[group] = sum(max(0, ends[(tp.topic, tp.partition)] - max(tp.offset, 0)) for tp in committed)
    return lag


def wait_drained(groups: Sequence[str], timeout: float = 120.0, settle: float = 0.5) -> float:
    """Wait until the groups have consumed everything (lag 0); returns the seconds it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if not any(group_lag(groups).values()):
            time.sleep(settle)
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError(f"consumer groups {groups} still lag after {timeout:.0f}s: {group_lag(groups)}")


# -- real orders ----------------------------------------------------------------------------------------
def real_orders(count: int, data: Path = DEFAULT_DATA) -> list[Any]:
    """`count` real UCI Online Retail invoices as eventshop_tools.replay.ReplayOrder, cycled if the file
    gives fewer (a cycled copy keeps its lines; callers give every copy its own ids)."""
    from eventshop_tools.replay import load_orders

    if not data.exists():
        raise SystemExit(f"{data}: the UCI Online Retail file is needed (pass --data)")
    orders, _ = load_orders(data, limit=min(int(count * 1.45) + 50, 26_000))
    if not orders:
        raise SystemExit(f"{data}: no orders")
    return [orders[i % len(orders)] for i in range(count)]


def order_events(count: int, data: Path = DEFAULT_DATA, tag: str = "") -> list[Any]:
    """`count` OrderPlaced events from real invoices, each with its own order id, one second apart."""
    from eventkit.events import LineItem, OrderPlaced, event_id_for

    start = datetime(2011, 1, 4, 9, tzinfo=UTC)
    events = []
    for i, order in enumerate(real_orders(count, data)):
        order_id = str(uuid.uuid5(_NS, f"{tag}/{i}/{order.invoice_no}"))
        when = start + timedelta(seconds=i)
        events.append(
            OrderPlaced(
                event_id=event_id_for(order_id, OrderPlaced.RECORD),
                occurred_at=when,
                order_id=order_id,
                customer_id=order.customer_id,
                currency="GBP",
                country=order.country,
                placed_at=when,
                items=tuple(
                    LineItem(sku=x.sku, quantity=x.quantity, unit_price=x.unit_price, description=x.description)
                    for x in order.items
                ),
            )
        )
    return events


# -- processes ------------------------------------------------------------------------------------------
def python_cmd(script: str, *args: str, cpu_list: Iterable[int] | None = None) -> list[str]:
    prefix = taskset(cpu_list) if cpu_list is not None else []
    return [*prefix, sys.executable, str(BENCH / script), *args]


def run_json(cmd: Sequence[str], timeout: float = 300, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child that prints one JSON object on its last stdout line; return it (or raise with stderr)."""
    out = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({out.returncode}): {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def log_path(name: str) -> Path:
    from eventshop_tools import stack

    path = stack.RUN / "logs" / "bench" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def start_server(
    name: str, argv: Sequence[str], port: int, env: dict[str, str] | None = None, cpu_list: Iterable[int] | None = None
) -> subprocess.Popen[bytes]:
    """Start an HTTP server process (pinned if asked) and wait until GET /health answers 200."""
    import httpx

    prefix = taskset(cpu_list) if cpu_list is not None else []
    log = log_path(name).open("ab")
    proc = subprocess.Popen(
        [*prefix, *argv], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_path(name)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        time.sleep(0.2)
    stop_process(proc)
    raise RuntimeError(f"{name} did not answer on :{port} within 90 s; see {log_path(name)}")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- results ----------------------------------------------------------------------------------------------
def write_result(name: str, result: dict[str, Any]) -> Path:
    """bench/results/<name>.json with when/machine/versions/command added."""
    result = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "uv run python " + " ".join([f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "machine": machine(),
        "cpus": {"generator": generator_cpus(), "servers": server_cpus()},
        **result,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def run_and_report(
    name: str, run: Callable[[], dict[str, Any]], table: Callable[[dict[str, Any]], str], services: bool
) -> int:
    """What every benchmark's main does: start what is missing, run, stop what it started, write, print."""
    started = ensure_stack(services=services)
    try:
        result = run()
    finally:
        stop_started(started)
    path = write_result(name, result)
    print(table(result))
    print(f"\nwritten to {path.relative_to(ROOT)}")
    return 0


def eventkit_vs_raw(results: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    """The arms and ratios of an eventkit-vs-raw benchmark (`results` by arm, "eventkit" and "raw": rounds with
    msgs_per_s and cpu_us_per_msg): `key` is the msgs/s ratio, `<key>_cpu_per_msg` the CPU one."""
    rate = {name: [r["msgs_per_s"] for r in rs] for name, rs in results.items()}
    cpu = {name: [r["cpu_us_per_msg"] for r in rs] for name, rs in results.items()}
    return {
        "arms": {
            "eventkit_msgs_per_s": spread(rate["eventkit"]),
            "raw_msgs_per_s": spread(rate["raw"]),
            "eventkit_cpu_us_per_msg": spread(cpu["eventkit"]),
            "raw_cpu_us_per_msg": spread(cpu["raw"]),
        },
        "ratios": {
            key: ratio(rate["eventkit"], rate["raw"]),
            f"{key}_cpu_per_msg": ratio(cpu["eventkit"], cpu["raw"]),
        },
        "goal": {key: ">= 0.9"},
        "rounds": results,
    }


def eventkit_vs_raw_table(result: dict[str, Any], key: str, eventkit_arm: str, raw_arm: str) -> str:
    a, r = result["arms"], result["ratios"]
    rows = [
        (f"{eventkit_arm} (msgs/s)", fmt_spread(a["eventkit_msgs_per_s"])),
        (f"{raw_arm} (msgs/s)", fmt_spread(a["raw_msgs_per_s"])),
        ("eventkit CPU per message (µs)", fmt_spread(a["eventkit_cpu_us_per_msg"], 1)),
        ("raw CPU per message (µs)", fmt_spread(a["raw_cpu_us_per_msg"], 1)),
        (f"**{key}** (msgs/s ratio, goal >= 0.9)", fmt_ratio(r[key])),
        ("CPU per message, eventkit / raw", fmt_ratio(r[f"{key}_cpu_per_msg"])),
    ]
    return measure_table(rows)


def measure_table(rows: Iterable[tuple[str, str]]) -> str:
    return "\n".join(["| measure | median (min-max) |", "|---|---:|", *(f"| {x} | {y} |" for x, y in rows)])


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# -- Kafka's own tools ------------------------------------------------------------------------------------
def kafka_tools_classpath() -> str:
    """Class path with kafka-tools (fetched once into the jar cache, like the broker's jars) before the
    broker's jar set, which brings everything ProducerPerformance / EndToEndLatency need."""
    from eventshop_tools import stack

    libs = stack.CACHE / f"kafka-tools-{stack.KAFKA_VERSION}" / "libs"
    if not (libs / ".complete").exists():
        shutil.rmtree(libs, ignore_errors=True)
        print(f"fetching kafka-tools {stack.KAFKA_VERSION} from Maven Central ...", flush=True)
        stack.mvn(
            "-f", str(TOOLS_POM), f"-Dkafka.version={stack.KAFKA_VERSION}",
            f"{stack.DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime", "-DexcludeTransitive=true",
            f"-DoutputDirectory={libs}",
        )  # fmt: skip
        (libs / ".complete").touch()
    return f"{libs}/*:{stack.kafka_libs()}/*"


def java_tool(main_class: str, *args: str, heap: str = "256m") -> list[str]:
    from eventshop_tools import stack

    java = stack.find_java(17)
    return [*taskset(generator_cpus()), java, f"-Xmx{heap}", "-XX:+UseG1GC", "-cp", kafka_tools_classpath(),
            main_class, *args]  # fmt: skip
