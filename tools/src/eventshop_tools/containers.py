"""Kafka and Apicurio in Docker containers (testcontainers), for machines that have a Docker engine.

The same images and versions as docker-compose.yml and the native runtime. Where no engine answers
(our development and CI machines), the native runtime in stack.py stands in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from eventshop_tools.stack import APICURIO_VERSION, KAFKA_PORT, KAFKA_VERSION

CCOMPAT_PATH = "/apis/ccompat/v7"


def docker_available() -> bool:
    """True only if a Docker engine answers; a docker CLI alone is not enough."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def kafka_env(host: str) -> dict[str, str]:
    """Single-node KRaft settings as in docker-compose.yml. The broker is published on the fixed host port
    KAFKA_PORT because it must advertise the address clients connect to; a random port would not match."""
    return {
        "CLUSTER_ID": "6lrvuGRcQqeZz8M6tHa_FQ",
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@127.0.0.1:9093",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENERS": f"PLAINTEXT://:19092,PLAINTEXT_HOST://:{KAFKA_PORT},CONTROLLER://:9093",
        # No compose network here, so the internal listener advertises loopback instead of kafka:19092.
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:19092,PLAINTEXT_HOST://{host}:{KAFKA_PORT}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": ("CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


def start_containers() -> tuple[str, str, Callable[[], None]]:
    """Start Kafka and Apicurio; return (bootstrap servers, registry ccompat URL, stop function)."""
    try:  # imported here: testcontainers is a dev dependency, and only machines with Docker need it
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.wait_strategies import HttpWaitStrategy, LogMessageWaitStrategy
    except ImportError as exc:
        raise RuntimeError(f"testcontainers 4.13+ is needed for containers (`uv sync` installs it): {exc}") from exc

    kafka = DockerContainer(f"apache/kafka:{KAFKA_VERSION}")
    host = kafka.get_docker_client().host()  # where published ports are reached (localhost or DOCKER_HOST)
    kafka.with_envs(**kafka_env(host)).with_bind_ports(KAFKA_PORT, KAFKA_PORT)
    # The broker logs this line once it serves clients (also what Kafka's own system tests wait for).
    kafka.waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
    # In-memory storage (the image's default): each test session starts with an empty registry.
    registry = DockerContainer(f"apicurio/apicurio-registry:{APICURIO_VERSION}").with_exposed_ports(8080)
    registry.waiting_for(
        HttpWaitStrategy(8080, f"{CCOMPAT_PATH}/subjects").for_status_code(200).with_startup_timeout(180)
    )

    started: list[DockerContainer] = []

    def stop() -> None:
        for container in reversed(started):
            # Keep stopping the others if one fails; testcontainers' Ryuk removes leftovers anyway.
            with contextlib.suppress(Exception):
                container.stop()
        started.clear()

    try:
        for container in (kafka, registry):
            started.append(container)  # before start(): a container that fails its wait is removed too
            container.start()
        registry_url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8080)}{CCOMPAT_PATH}"
    except BaseException:
        stop()
        raise
    return f"{host}:{KAFKA_PORT}", registry_url, stop
