"""Typed settings of the two recommend processes, read from the environment (defaults = what `make up` runs)."""

from __future__ import annotations

from pydantic import Field

from eventkit.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    """The read API (`python -m recommend_service`)."""

    port: int = 8004
    # An entry older than this (seconds since its computed_at) is still served at once, marked stale,
    # and a refresh is requested (env RECOMMEND_MAX_AGE).
    recommend_max_age: float = 300.0
    # A refresh request with no new list after this long may be sent again (the stream app may be down).
    recommend_refresh_timeout: float = 30.0
    recommend_default_limit: int = 10


class WorkerSettings(ServiceSettings):
    """The Faust stream app (`python -m recommend_service.worker`)."""

    port: int = 8005  # its /health (Faust's web server)
    # The Faust app id: also its consumer group.
    recommend_app_id: str = "recommend"
    # Orders are folded into the tables in batches of up to this many, or what arrived within `within` s.
    recommend_batch_max: int = 500
    recommend_batch_within: float = 0.5
    # Faust's producer (aiokafka): wait this long to batch sends, batches up to this many bytes (aiokafka's
    # defaults are 0 s and 16 KiB; librdkafka's, which the other services use, 5 ms and 1 MB).
    recommend_producer_linger: float = 0.005
    recommend_producer_batch_bytes: int = 1_000_000
    # Catalogue topic name -> name to use instead (the benchmark runs the app on its own topics).
    recommend_topics: dict[str, str] = Field(default_factory=dict)
