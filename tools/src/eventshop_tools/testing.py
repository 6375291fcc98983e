"""Pytest fixtures shared by every test folder (loaded by the root conftest.py).

`infra` yields the broker and registry addresses, chosen once per session:
  1. KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL set -> use them (services expected at their ports);
  2. a Docker engine answers -> testcontainers (services run as local processes against it);
  3. otherwise the native runtime, started with the same code as `make up` and stopped afterwards
     (an already running `make up` is reused and left running).
With CI=true a broker that can't be had fails the run; nothing is skipped for lack of it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "disruptive: stops and restarts parts of the running system; runs last")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder (unit / integration / e2e) and run the disruptive ones last."""
    for item in items:
        path = str(item.path)
        if "/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
