"""The read API: answers from the in-memory view of the cache topics, stale-while-revalidate.

    GET /recommendations/products/{sku}?limit=N
    GET /recommendations/customers/{customer_id}?limit=N
    -> {"sku" | "customer_id", "items": [{"sku", "score"}], "computed_at", "stale", "fallback"}

Never calls the stream app: an entry older than RECOMMEND_MAX_AGE is answered at once with
`stale: true` while a RecommendationRefreshRequested goes to the refresh topic (one in flight per key);
an unknown key (or a known one with an empty list) gets the popular list with `fallback: true`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse

from eventkit.catalogue import load_catalogue
from eventkit.events import utcnow
from eventkit.producer import EventProducer
from eventkit.serde import AvroCodec
from recommend_service.model import POPULAR_SCOPE
from recommend_service.scoring import TOP_N
from recommend_service.settings import ApiSettings
from recommend_service.topics import RecommendTopics
from recommend_service.view import CacheView, Entry, Key, Refresher, ViewFollower

NAME = "recommend"
log = logging.getLogger("recommend.api")


def create_app(settings: ApiSettings) -> FastAPI:
    catalogue = load_catalogue(settings.schemas_dir)
    topics = RecommendTopics.from_catalogue(catalogue)
    codec = AvroCodec.connect(settings.schema_registry_url, catalogue)
    producer = EventProducer(settings, codec, client_id=f"{NAME}-api")
    refresher = Refresher(producer, topics.refresh.name, settings.recommend_refresh_timeout)
    view = CacheView(on_update=refresher.landed)
    follower = ViewFollower(settings, topics, codec, view)
    max_age = timedelta(seconds=settings.recommend_max_age)
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            try:
                follower.run(stop)
            except Exception:
                log.exception("cache topic follower failed; restarting in 2s")
                stop.wait(2)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        thread = threading.Thread(target=follow, name="recommend-view", daemon=True)
        thread.start()
        yield
        stop.set()
        thread.join(timeout=10)
        producer.close()

    app = FastAPI(title="eventshop recommend", lifespan=lifespan)
    app.state.view, app.state.refresher = view, refresher

    def answer(field: str, kind: str, target: str, limit: int) -> dict[str, Any]:
        key: Key = (kind, target)
        entry = view.get(kind, target)
        fallback = entry is None or not entry.items
        if fallback:
            key, entry = ("popular", POPULAR_SCOPE), view.get("popular", POPULAR_SCOPE)
        stale = entry is not None and utcnow() - entry.computed_at > max_age
        if entry is not None and stale:
            refresher.request(key, entry.computed_at)
        return {
            field: target,
            "items": [{"sku": i.sku, "score": i.score} for i in _items(entry, exclude=target)[:limit]],
            "computed_at": entry.computed_at.isoformat() if entry else None,
            "stale": stale,
            "fallback": fallback,
        }

    @app.get("/recommendations/products/{sku}")
    async def product(sku: str, limit: int = Query(settings.recommend_default_limit, ge=1, le=TOP_N)) -> dict[str, Any]:
        return answer("sku", "product", sku, limit)

    @app.get("/recommendations/customers/{customer_id}")
    async def customer(
        customer_id: str, limit: int = Query(settings.recommend_default_limit, ge=1, le=TOP_N)
    ) -> dict[str, Any]:
        return answer("customer_id", "customer", customer_id, limit)

    @app.get("/health")
    def health() -> JSONResponse:
        loaded = view.loaded.is_set()
        body = {
            "service": NAME,
            "status": "ok" if loaded else "loading",
            "entries": view.counts(),
            "records_read": follower.records,
            "refresh": {
                "requested": refresher.requested,
                "in_flight": refresher.in_flight(),
                "failed": refresher.failed,
            },
            "max_age_seconds": settings.recommend_max_age,
        }
        return JSONResponse(body, status_code=200 if loaded else 503)

    return app


def _items(entry: Entry | None, exclude: str) -> list[Any]:
    return [item for item in (entry.items if entry else ()) if item.sku != exclude]
