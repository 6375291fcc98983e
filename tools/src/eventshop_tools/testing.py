"""Pytest fixtures shared by every test folder (loaded by the root conftest.py).

`infra` yields the broker and registry addresses, chosen once per session:
  1. KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL set -> use them (services expected at their ports);
  2. a Docker engine answers -> testcontainers (services run as local processes against it);
  3. otherwise the native runtime, started with the same code as `make up` and stopped afterwards
     (an already running `make up` is reused and left running).
With CI=true a broker that can't be had fails the run; nothing is skipped for lack of it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from eventkit.catalogue import Catalogue, load_catalogue
from eventkit.settings import KafkaSettings
from eventshop_tools import stack


@dataclass(frozen=True)
class Infra:
    bootstrap_servers: str
    registry_url: str
    how: str  # "env" | "containers" | "native"
    order_url: str = "http://127.0.0.1:8000"

    def settings(self) -> KafkaSettings:
        return KafkaSettings(kafka_bootstrap_servers=self.bootstrap_servers, schema_registry_url=self.registry_url)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield Infra(
            os.environ["KAFKA_BOOTSTRAP_SERVERS"],
            os.environ.get("SCHEMA_REGISTRY_URL", stack.REGISTRY_URL),
            "env",
        )
        return
    from eventshop_tools.containers import docker_available, start_containers

    if docker_available():
        bootstrap, registry, stop_containers = start_containers()
        os.environ.update(KAFKA_BOOTSTRAP_SERVERS=bootstrap, SCHEMA_REGISTRY_URL=registry)
        started = []
        try:
            stack.provision()
            for comp in stack.installed_services():
                if stack.start(comp):
                    started.append(comp)
            yield Infra(bootstrap, registry, "containers")
        finally:
            for comp in reversed(started):
                stack.stop(comp)
            stop_containers()
        return
    try:
        started = stack.up(with_services=True)
    except stack.StackError as exc:
        pytest.fail(f"native Kafka/registry could not start: {exc}", pytrace=False)
    try:
        yield Infra(stack.BOOTSTRAP, stack.REGISTRY_URL, "native")
    finally:
        for comp in reversed(started):
            stack.stop(comp)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue(KafkaSettings().schemas_dir)


@pytest.fixture
def unique() -> str:
    """A short unique token for names that must not collide with other tests on the shared broker."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def order_api(infra: Infra) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=infra.order_url, timeout=30) as client:
        yield client


def eventually(probe: Callable[[], object], timeout: float = 30.0, interval: float = 0.1) -> object:
    """Poll `probe` until it returns something truthy; fail with its last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


# -- driving the running system through the order API ------------------------------------------
SERVICE_OF = {"Payment": "accounting", "Stock": "inventory", "Shipment": "shipping"}


def order_body(customer: str, *lines: tuple[str, int, str], **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "currency": "GBP",
        "country": "United Kingdom",
        "items": [{"sku": sku, "quantity": qty, "unit_price": price} for sku, qty, price in lines],
        **extra,
    }


def services_in(timeline: list[dict[str, Any]]) -> set[str]:
    return {svc for e in timeline for prefix, svc in SERVICE_OF.items() if e["type"].startswith(prefix)}


@pytest.fixture
def place(order_api: httpx.Client) -> Callable[..., str]:
    def _place(body: dict[str, Any], key: str | None = None) -> str:
        headers = {"Idempotency-Key": key} if key else {}
        response = order_api.post("/orders", json=body, headers=headers)
        assert response.status_code == 202, response.text
        return str(response.json()["order_id"])

    return _place


@pytest.fixture
def wait_final(order_api: httpx.Client) -> Callable[..., dict[str, Any]]:
    def _wait(order_id: str, timeout: float = 60, require: tuple[str, ...] = ()) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            view = order_api.get(f"/orders/{order_id}").json()
            types = {e["type"] for e in view.get("timeline", [])}
            if view.get("status") in ("dispatched", "cancelled") and set(require) <= types:
                return view
            return None

        return eventually(final, timeout=timeout, interval=0.2)  # type: ignore[return-value]

    return _wait


@pytest.fixture
def sku() -> Callable[[], str]:
    """Fresh SKUs, so stock levels seen by a test are untouched by other tests (stock file default)."""
    return lambda: f"T{uuid.uuid4().hex[:12].upper()}"


def pytest_configure(config: pytest.Config) -> None:
    config.eventshop_started = time.time()  # type: ignore[attr-defined]
    config.addinivalue_line("markers", "disruptive: stops and restarts parts of the running system; runs last")
    config.addinivalue_line("markers", "faults: the fault-injection suite (kill -9, broker restart, poison, replay)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder (unit / integration / e2e) and run the disruptive ones last."""
    for item in items:
        path = str(item.path)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: (item.get_closest_marker("disruptive") is not None, "/faults/" in str(item.path)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fault-injection table when this run produced one."""
    from eventshop_tools.faults import RESULTS, table

    if RESULTS.exists() and RESULTS.stat().st_mtime > terminalreporter.config.eventshop_started:
        terminalreporter.write_sep("=", "fault injection")
        terminalreporter.write_line(table(json.loads(RESULTS.read_text()).values()))
