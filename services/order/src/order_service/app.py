"""The order service's HTTP edge and its wiring: POST /orders -> OrderPlaced, GET /orders/{id} <- view."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
import weakref
from importlib import resources
from typing import Annotated

from confluent_kafka import KafkaException
from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field, model_validator

from eventkit.catalogue import load_catalogue
from eventkit.consumer import ConsumerRunner
from eventkit.events import OrderPlaced, utcnow
from eventkit.producer import CORRELATION_HEADER, EDGE_LINGER_MS, DeliveryError, EventProducer
from eventkit.serde import AvroCodec
from eventkit.service import consumer_app
from eventkit.settings import ServiceSettings
from order_service import streams, view
from order_service.limits import BodyLimit
from order_service.models import OrderAccepted, OrderRequest, OrderView
from order_service.push import PushHub

NAME = "order"
log = logging.getLogger("order_service")
# Orders placed with an Idempotency-Key get an id derived from (customer, key): a retry after a crash
# between "produced" and "recorded" re-produces the same order, which every consumer deduplicates.
_ORDER_NS = uuid.UUID("7d2e4f10-6a3b-4c8d-b5e9-1f0a2c3d4e5f")


class OrderSettings(ServiceSettings):
    port: int = 8000
    # Each instance that serves timelines (and pushes them) needs every order event, so each has its own
    # consumer group and its own timeline file. INSTANCE_ID=b gives group "order-view-b" and "order-b.db";
    # GROUP_ID, if set, names the group itself.
    instance_id: Annotated[str, Field(pattern=r"^[a-z0-9-]{0,40}$")] = ""
    group_id: str = ""
    max_body_bytes: int = 1_048_576
    # Push (WebSocket / SSE): events a follower may fall behind before it is cut off; idle time before a
    # heartbeat; longest single send; how long an order this instance has not heard of yet is waited for;
    # how long after the final event the rest of the order's story (view.awaited) is waited for.
    push_queue_limit: Annotated[int, Field(ge=1)] = 256
    push_ping_seconds: Annotated[float, Field(gt=0)] = 15.0
    push_send_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    push_unknown_wait_seconds: Annotated[float, Field(ge=0)] = 10.0
    push_final_wait_seconds: Annotated[float, Field(ge=0)] = 5.0

    @model_validator(mode="after")
    def per_instance(self) -> OrderSettings:
        if not self.group_id:
            self.group_id = f"order-view-{self.instance_id}" if self.instance_id else "order-view"
        return self

    @property
    def db_file(self) -> str:
        return f"{NAME}-{self.instance_id}.db" if self.instance_id else f"{NAME}.db"


def order_id_for(customer_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_ORDER_NS, f"{customer_id}/{idempotency_key}"))


def create_app(settings: OrderSettings) -> FastAPI:
    catalogue = load_catalogue(settings.schemas_dir)
    codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
    producer = EventProducer(settings, codec, client_id=NAME, linger_ms=EDGE_LINGER_MS)
    store = view.open_store(settings.state_dir / settings.db_file)
    hub = PushHub(settings.push_queue_limit)
    placed_topic = catalogue.topic_for(OrderPlaced.RECORD).name
    key_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
    send_timeout = settings.delivery_timeout_ms / 1000 + 2

    def make_runner() -> ConsumerRunner:
        return ConsumerRunner(
            settings=settings,
            producer=EventProducer(settings, AvroCodec.connect(settings.schema_registry_url, catalogue), NAME),
            service=NAME,
            group_id=settings.group_id,
            pattern=catalogue.order_events_pattern,
            handler=lambda received: view.project(store, received, hub.notify_threadsafe),
        )

    def shutdown() -> None:
        hub.close()
        producer.close()

    app = consumer_app(NAME, make_runner, extra=lambda: {"push": hub.stats()}, on_shutdown=shutdown)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The reasons, without echoing the input back.
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.post(
        "/orders",
        status_code=202,
        response_model=OrderAccepted,
        responses={409: {"description": "Idempotency-Key reused with a different body"},
                   413: {"description": "Body too large"},
                   503: {"description": "Kafka did not confirm the order; nothing was accepted"}},
    )  # fmt: skip
    async def place_order(
        order: OrderRequest,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    ) -> OrderAccepted | JSONResponse:
        correlation_id = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        response.headers["X-Correlation-ID"] = correlation_id
        digest = hashlib.sha256(order.model_dump_json().encode()).hexdigest()
        lock_key = (order.customer_id, idempotency_key or correlation_id)
        lock = key_locks.setdefault(lock_key, asyncio.Lock())
        async with lock:
            if idempotency_key is not None:
                prior = view.accepted_order(store.read(), order.customer_id, idempotency_key)
                if prior is not None:
                    if prior[1] != digest:
                        return JSONResponse(
                            {"detail": "Idempotency-Key was already used with a different order body"},
                            status_code=409,
                        )
                    return _accepted(response, prior[0])
            order_id = order_id_for(order.customer_id, idempotency_key)
            placed_at = utcnow()
            event = order.to_event(order_id, placed_at)
            try:
                await asyncio.wait_for(
                    producer.send(placed_topic, order_id, event, {CORRELATION_HEADER: correlation_id}),
                    timeout=send_timeout,
                )
            except (DeliveryError, KafkaException, BufferError, TimeoutError) as exc:
                log.warning("order not confirmed by Kafka: %s", exc, extra={"correlation_id": correlation_id})
                return JSONResponse(
                    {"detail": "the order could not be stored in the event log; nothing was accepted, retry later "
                               "(with the same Idempotency-Key)"},
                    status_code=503,
                    headers={"Retry-After": "5", "X-Correlation-ID": correlation_id},
                )  # fmt: skip
            view.record_accepted(store, order_id, order.customer_id, idempotency_key, digest, placed_at)
        log.info(
            "order accepted",
            extra={"order_id": order_id, "correlation_id": correlation_id, "lines": len(order.items)},
        )
        return _accepted(response, order_id)

    @app.get("/orders/{order_id}", response_model=OrderView, responses={404: {"description": "Unknown order"}})
    def get_order(order_id: str) -> dict | JSONResponse:
        found = view.order_view(store.read(), order_id)
        if found is None:
            return JSONResponse({"detail": f"order {order_id} not found"}, status_code=404)
        return found

    def read_snapshot(order_id: str, after_event_id: str | None) -> view.Snapshot:
        with contextlib.closing(store.read()) as db:
            return view.snapshot(db, order_id, after_event_id)

    app.include_router(
        streams.router(
            hub,
            read_snapshot,
            ping_seconds=settings.push_ping_seconds,
            unknown_wait_seconds=settings.push_unknown_wait_seconds,
            final_wait_seconds=settings.push_final_wait_seconds,
            send_timeout=settings.push_send_timeout_seconds,
        )
    )

    ui_files = resources.files("order_service") / "ui"
    ui_page = (ui_files / "index.html").read_text(encoding="utf-8")
    samples = json.loads((ui_files / "samples.json").read_text(encoding="utf-8"))

    @app.get("/ui", response_class=HTMLResponse, include_in_schema=False)
    def ui() -> HTMLResponse:
        return HTMLResponse(ui_page)

    @app.get("/ui/samples", include_in_schema=False)
    def ui_samples() -> JSONResponse:
        return JSONResponse(samples)

    return app


def _accepted(response: Response, order_id: str) -> OrderAccepted:
    status_url = f"/orders/{order_id}"
    response.headers["Location"] = status_url
    return OrderAccepted(order_id=order_id, status_url=status_url)
