"""Run the recommend stream app (Faust worker): `python -m recommend_service.worker`.

Environment: KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, PORT (its /health, default 8005), HOST,
RECOMMEND_APP_ID (consumer group, default "recommend"), RECOMMEND_BATCH_MAX, RECOMMEND_BATCH_WITHIN.
SIGTERM stops it gracefully (agents finish their batch, offsets are committed).
"""

from __future__ import annotations

import faust

from eventkit.catalogue import load_catalogue
from eventkit.logs import configure
from eventkit.serde import AvroCodec
from recommend_service.settings import WorkerSettings
from recommend_service.stream import create_stream_app

NAME = "recommend-worker"


def main() -> None:
    settings = WorkerSettings()
    configure(NAME, settings.log_level)
    catalogue = load_catalogue(settings.schemas_dir)
    app = create_stream_app(settings, catalogue, AvroCodec.connect(settings.schema_registry_url, catalogue))
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
