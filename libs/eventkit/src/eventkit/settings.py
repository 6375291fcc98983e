"""Typed settings read from the environment; every default matches what `make up` starts."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

# libs/eventkit/src/eventkit/settings.py -> repository root
REPO_ROOT = Path(__file__).resolve().parents[4]


class KafkaSettings(BaseSettings):
    """Where the broker and the registry are, and where schemas and local state live."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    schema_registry_url: str = "http://127.0.0.1:8081/apis/ccompat/v7"
    schemas_dir: Path = REPO_ROOT / "schemas"
    state_dir: Path = REPO_ROOT / ".run" / "state"
    # How long a produce may wait for the broker's acknowledgement before it counts as failed.
    delivery_timeout_ms: int = 10_000
    # A failing handler is retried with exponential backoff (0.1, 0.2, 0.4, 0.8 s by default: bounded, so a
    # partition is never held for long), then its record goes to the dead-letter topic.
    handler_max_attempts: int = 5
    handler_backoff_seconds: float = 0.1


class ServiceSettings(KafkaSettings):
    """What every service process adds: where its HTTP side listens and how much it logs."""

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
