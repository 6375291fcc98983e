"""Bench-only HTTP apps: the synchronous baseline of the thesis and the bare FastAPI intake.

    python bench/sync_shop.py front      --port P --accounting URL --shipping URL
    python bench/sync_shop.py accounting --port P [--delay-ms 200]
    python bench/sync_shop.py shipping   --port P [--delay-ms 200]
    python bench/sync_shop.py bare       --port P
    python bench/sync_shop.py bare-kafka --port P [--topic bench.intake]

- **front**: the order endpoint as a synchronous design would write it: validate the same body as the real
  order API (`order_service.models.OrderRequest`), derive the same order id, then call accounting and
  shipping over HTTP (aiohttp, keep-alive), one after the other (shipping needs the payment decision), and
  answer 201 with both decisions; 503 when a downstream fails or does not answer within 10 s.
- **accounting** / **shipping**: stand-ins that make the real decisions with the services' own pure
  functions (`accounting_service.domain.decide`, `shipping_service.domain.decide`), keep the state in
  memory, and can add a delay (`--delay-ms`) before answering. "Down" = the process is not started.
- **bare**: POST /orders validates the same body and answers 202 with the same `OrderAccepted` body and
  headers as the real endpoint, without Kafka, SQLite or idempotency (intake_vs_bare_fastapi);
  **bare-kafka** adds eventshop's Kafka path to it (the event built as the real endpoint builds it, then
  `await EventProducer.send` to a bench topic): what Kafka costs, apart from the rest of the order service.

All of them are served like every eventshop service (`eventkit.service.serve`, JSON logs at INFO through
`eventkit.logs.configure`, so uvicorn's access log costs the same as in the real services).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import aiohttp
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from accounting_service import domain as accounting
from eventkit.events import LineItem, OrderPlaced, PaymentCaptured, PaymentDeclined, utcnow
from eventkit.logs import configure
from eventkit.producer import CORRELATION_HEADER
from eventkit.service import serve
from order_service.app import order_id_for
from order_service.models import OrderAccepted, OrderRequest
from shipping_service import domain as shipping

CREDIT_LIMIT = Decimal("5000.000")  # accounting's default (ACCOUNTING_CREDIT_LIMIT)


class PlacedOrder(BaseModel):
    """What the front sends downstream: the validated order with its id and time."""

    order_id: str
    placed_at: str
    order: OrderRequest


class ShipmentRequest(PlacedOrder):
    payment: str  # "captured" | "declined"
    payment_reason: str | None = None


def to_event(placed: PlacedOrder) -> OrderPlaced:
    return placed.order.to_event(placed.order_id, datetime.fromisoformat(placed.placed_at))


def health_route(app: FastAPI, name: str) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"service": name, "status": "ok"}


# -- the stand-ins ------------------------------------------------------------------------------------
def accounting_app(delay: float) -> FastAPI:
    app = FastAPI(title="bench accounting stand-in")
    payments: dict[str, accounting.Payment] = {}
    health_route(app, "accounting-standin")

    @app.post("/payments")
    async def pay(placed: PlacedOrder) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        event = to_event(placed)
        payment = payments.get(event.order_id) or accounting.Payment(order_id=event.order_id)
        payment, out = accounting.decide(payment, event, CREDIT_LIMIT)
        payments[event.order_id] = payment
        reason = next((e.reason for e in out if isinstance(e, PaymentDeclined)), None)
        return {"order_id": event.order_id, "status": payment.status, "reason": reason, "amount": str(payment.amount)}

    return app


def shipping_app(delay: float) -> FastAPI:
    app = FastAPI(title="bench shipping stand-in")
    shipments: dict[str, shipping.Shipment] = {}
    health_route(app, "shipping-standin")

    @app.post("/shipments")
    async def ship(request: ShipmentRequest) -> dict[str, Any]:
        if delay:
            await asyncio.sleep(delay)
        event = to_event(request)
        state = shipments.get(event.order_id) or shipping.Shipment(order_id=event.order_id)
        who = {"order_id": event.order_id, "customer_id": event.customer_id, "amount": event.total,
               "currency": event.currency}  # fmt: skip
        payment = (
            PaymentCaptured.create(**who)
            if request.payment == "captured"
            else PaymentDeclined.create(**who, reason=request.payment_reason or "declined")
        )
        emitted = []
        # No inventory in the synchronous design: dispatch waits for payment only (require_stock=False).
        for fact in (event, payment):
            state, out = shipping.decide(state, fact, require_stock=False)
            emitted += [e.RECORD for e in out]
        shipments[event.order_id] = state
        return {"order_id": event.order_id, "status": state.status, "events": emitted}

    return app


# -- the synchronous front ----------------------------------------------------------------------------
def front_app(accounting_url: str, shipping_url: str, timeout: float = 10.0) -> FastAPI:
    sessions: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        # aiohttp rather than httpx: about half the client CPU per call, so the baseline is not slowed by
        # its HTTP client (keep-alive pool, as a real service would hold).
        connector = aiohttp.TCPConnector(limit=500)
        sessions["http"] = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout))
        yield
        await sessions["http"].close()

    app = FastAPI(title="bench synchronous order front", lifespan=lifespan)
    health_route(app, "sync-front")

    async def call(url: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
        async with sessions["http"].post(url, data=body.encode(), headers=headers) as answer:
            answer.raise_for_status()
            return await answer.json()

    @app.post("/orders", status_code=201)
    async def place_order(
        order: OrderRequest,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    ) -> Any:
        correlation_id = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        response.headers["X-Correlation-ID"] = correlation_id
        order_id = order_id_for(order.customer_id, idempotency_key)
        # The order is serialized once; both calls carry it (each downstream validates it again).
        placed = (
            f'"order_id":{json.dumps(order_id)},"placed_at":"{utcnow().isoformat()}","order":{order.model_dump_json()}'
        )
        headers = {"X-Correlation-ID": correlation_id, "Content-Type": "application/json"}
        try:
            payment = await call(f"{accounting_url}/payments", "{" + placed + "}", headers)
            decision = json.dumps({"payment": payment["status"], "payment_reason": payment["reason"]})
            shipment = await call(f"{shipping_url}/shipments", "{" + placed + "," + decision[1:], headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return JSONResponse(
                {"detail": f"a downstream service failed: {type(exc).__name__}"},
                status_code=503,
                headers={"Retry-After": "5", "X-Correlation-ID": correlation_id},
            )
        response.headers["Location"] = f"/orders/{order_id}"
        return {"order_id": order_id, "payment": payment, "shipment": shipment}

    return app


# -- the bare intake ----------------------------------------------------------------------------------
def bare_app(kafka_topic: str | None = None) -> FastAPI:
    """`kafka_topic` given ("bare-kafka"): also build the OrderPlaced event as the real endpoint does and await
    eventkit's `EventProducer.send` to that (bench) topic, i.e. the bare endpoint plus eventshop's Kafka path,
    without the idempotency records (SQLite), the body limit and the order view's consumer thread."""
    producer: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if kafka_topic:
            import benchlib

            from eventkit.producer import EDGE_LINGER_MS, EventProducer
            from eventkit.serde import AvroCodec

            settings = benchlib.kafka_settings()
            codec = AvroCodec.connect(
                settings.schema_registry_url, benchlib.bench_catalogue({kafka_topic: "OrderPlaced"})
            )
            producer["p"] = EventProducer(settings, codec, client_id="bench-bare-kafka", linger_ms=EDGE_LINGER_MS)
        yield
        if producer:
            producer["p"].close()

    app = FastAPI(title="bench bare intake", lifespan=lifespan)
    health_route(app, "bare-intake")

    @app.post("/orders", status_code=202, response_model=OrderAccepted)
    async def place_order(
        order: OrderRequest,
        request: Request,
        response: Response,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
    ) -> OrderAccepted:
        correlation_id = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        response.headers["X-Correlation-ID"] = correlation_id
        order_id = order_id_for(order.customer_id, idempotency_key)
        if kafka_topic:
            event = OrderPlaced.create(
                order_id=order_id,
                customer_id=order.customer_id,
                currency=order.currency,
                country=order.country,
                placed_at=utcnow(),
                items=tuple(
                    LineItem(sku=i.sku, quantity=i.quantity, unit_price=i.unit_price, description=i.description)
                    for i in order.items
                ),
            )
            await producer["p"].send(kafka_topic, order_id, event, {CORRELATION_HEADER: correlation_id})
        response.headers["Location"] = f"/orders/{order_id}"
        return OrderAccepted(order_id=order_id, status_url=f"/orders/{order_id}")

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["front", "accounting", "shipping", "bare", "bare-kafka"])
    parser.add_argument("--topic", default="bench.intake", help="bare-kafka: the topic to produce to")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--accounting", default="")
    parser.add_argument("--shipping", default="")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.role == "front":
        app = front_app(args.accounting, args.shipping)
    elif args.role == "accounting":
        app = accounting_app(args.delay_ms / 1000)
    elif args.role == "shipping":
        app = shipping_app(args.delay_ms / 1000)
    elif args.role == "bare":
        app = bare_app()
    else:
        app = bare_app(args.topic)
    configure(f"bench-{args.role}", args.log_level)
    serve(app, "127.0.0.1", args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
