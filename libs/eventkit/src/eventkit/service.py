"""A consumer service as one process: the consumer runner in a thread, `/health` over HTTP.

SIGTERM (uvicorn's shutdown) sets the stop flag: the runner finishes the batch in flight, stores and
commits its offsets, closes the consumer, and the process exits.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from eventkit.catalogue import load_catalogue
from eventkit.consumer import ConsumerRunner, Received
from eventkit.events import Event, OrderEvent
from eventkit.producer import EventProducer
from eventkit.serde import AvroCodec
from eventkit.settings import ServiceSettings
from eventkit.store import StateStore

log = logging.getLogger("eventkit.service")

# A state-keeping service's decision step: runs inside its store's transaction, returns the events to emit.
Apply = Callable[[sqlite3.Connection, OrderEvent], Sequence[OrderEvent]]


def consumer_app(
    name: str,
    make_runner: Callable[[], ConsumerRunner],
    extra: Callable[[], dict] | None = None,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """A FastAPI app that runs `make_runner()` in a background thread for its whole lifetime."""
    stop = threading.Event()
    state: dict[str, object] = {"runner": None, "status": "starting"}

    def loop() -> None:
        while not stop.is_set():
            try:
                runner = make_runner()
                state["runner"], state["status"] = runner, "ok"
                runner.run(stop)
            except Exception:
                state["status"] = "restarting"
                log.exception("consumer loop failed; restarting in 2s")
                stop.wait(2)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=loop, name=f"{name}-consumer", daemon=True)
        thread.start()
        yield
        stop.set()
        began = time.monotonic()
        thread.join(timeout=30)
        log.info("consumer stopped in %.2fs", time.monotonic() - began)
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(title=f"eventshop {name}", lifespan=lifespan)

    @app.get("/health")
    def health() -> JSONResponse:
        runner = state["runner"]
        body: dict[str, object] = {"service": name, "status": state["status"]}
        if isinstance(runner, ConsumerRunner):
            body["consumer"] = asdict(runner.stats)
        if extra is not None:
            body.update(extra())
        return JSONResponse(body, status_code=200 if state["status"] == "ok" else 503)

    return app


def inbox_runner(
    settings: ServiceSettings,
    name: str,
    group_id: str,
    consumes: tuple[type[OrderEvent], ...],
    store: StateStore,
    apply: Apply,
) -> Callable[[], ConsumerRunner]:
    """The runner factory of a service that keeps state: it reads the topics of the `consumes` events (named
    by the catalogue) under its own group, and applies each event once through the store's inbox: `apply`
    runs inside the store's transaction, and a redelivered event re-emits the outputs recorded the first time."""
    catalogue = load_catalogue(settings.schemas_dir)

    def handle(received: Received) -> list[Event]:
        event = received.event
        if not isinstance(event, consumes):
            return []
        return store.process(event.event_id, lambda db: apply(db, event))

    def make_runner() -> ConsumerRunner:
        codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
        return ConsumerRunner(
            settings=settings,
            producer=EventProducer(settings, codec, client_id=name),
            service=name,
            group_id=group_id,
            topics=[catalogue.topic_for(cls.RECORD).name for cls in consumes],
            on_confirmed=store.confirm,
            handler=handle,
        )

    return make_runner


def serve(app: FastAPI, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=20)
