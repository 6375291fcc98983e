"""docker-compose.yml describes the same system as the native runtime (stack.py): versions, ports, wiring.

No Docker needed: the file is parsed and compared with stack.py's constants.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventshop_tools import stack

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
INTERNAL_BOOTSTRAP = "kafka:19092"
INTERNAL_REGISTRY = "http://registry:8080/apis/ccompat/v7"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("[ip:]host:container[/proto]") or long syntax."""
    pairs = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        if len(parts) >= 2:
            pairs.add((int(parts[-2]), int(parts[-1])))
    return pairs


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def conditions(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}; the list form means service_started."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def test_images_use_the_native_runtime_versions(services: dict[str, dict[str, Any]]) -> None:
    assert services["kafka"]["image"] == f"apache/kafka:{stack.KAFKA_VERSION}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{stack.APICURIO_VERSION}"


def test_infrastructure_is_published_on_the_native_ports(services: dict[str, dict[str, Any]]) -> None:
    assert (stack.KAFKA_PORT, 9092) in published(services["kafka"])
    assert (stack.REGISTRY_PORT, 8080) in published(services["registry"])
    assert stack.KAFKA_PORT == 9092 and stack.REGISTRY_PORT == 8081


def test_kafka_advertises_host_and_container_listeners(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"PLAINTEXT_HOST://{stack.BOOTSTRAP}" in advertised
    assert f"PLAINTEXT://{INTERNAL_BOOTSTRAP}" in advertised
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "healthcheck" in services["kafka"]
    assert "healthcheck" in services["registry"]


def test_init_provisions_after_kafka_and_registry_are_healthy(services: dict[str, dict[str, Any]]) -> None:
    init = services["init"]
    assert command(init) == ["python", "-m", "eventkit.provision"]
    assert conditions(init) == {"kafka": "service_healthy", "registry": "service_healthy"}
    env = environment(init)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == INTERNAL_BOOTSTRAP
    assert env["SCHEMA_REGISTRY_URL"] == INTERNAL_REGISTRY
    assert str(init.get("restart")) == "no"


@pytest.mark.parametrize("name", list(stack.SERVICES))
def test_every_native_service_has_a_container(services: dict[str, dict[str, Any]], name: str) -> None:
    module, port = stack.SERVICES[name]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert command(service) == ["python", "-m", module]
    assert (port, port) in published(service)
    env = environment(service)
    assert env["PORT"] == str(port)
    assert env["HOST"] == "0.0.0.0"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == INTERNAL_BOOTSTRAP
    assert env["SCHEMA_REGISTRY_URL"] == INTERNAL_REGISTRY
    assert any(volume.endswith(f":{env['STATE_DIR']}") for volume in service.get("volumes", []))
    probe = " ".join(command({"command": service["healthcheck"]["test"]}))
    assert f"127.0.0.1:{port}/health" in probe
    assert conditions(service).get("init") == "service_completed_successfully"
