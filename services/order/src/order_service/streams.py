"""The push edges: one follower's messages over a WebSocket or as Server-Sent Events.

WebSocket close codes: 1000 after the `final` message; 4404 unknown order; 4429 the client fell behind
(or one send took longer than the send timeout), reconnect with `after=<last event_id>`; 1001 when the
service stops. SSE: 404 for an unknown order; each entry is `id: <event_id>` + `data: <json>`, the last
one `data: {... "final": true}` without an id; `: ping` comments when idle; `event: dropped` before
ending a stream that fell behind (EventSource then reconnects with Last-Event-ID by itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Response, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from order_service.push import Follower, Push, PushHub, Reader, TooSlow, UnknownOrder

log = logging.getLogger("order_service.push")

NORMAL, GOING_AWAY = 1000, 1001
UNKNOWN_ORDER, TOO_SLOW = 4404, 4429


def router(
    hub: PushHub,
    read: Reader,
    *,
    ping_seconds: float,
    unknown_wait_seconds: float,
    final_wait_seconds: float,
    send_timeout: float,
) -> APIRouter:
    """`WS /orders/{id}/events` (resume: `?after=<event_id>`) and `GET /orders/{id}/events` as SSE
    (resume: the `Last-Event-ID` header, or `?after=`)."""
    routes = APIRouter()

    def follower(order_id: str, after_event_id: str | None) -> Follower:
        return Follower(
            hub,
            read,
            order_id,
            after_event_id,
            ping_seconds=ping_seconds,
            unknown_wait_seconds=unknown_wait_seconds,
            final_wait_seconds=final_wait_seconds,
        )

    @routes.websocket("/orders/{order_id}/events")
    async def follow_order_ws(websocket: WebSocket, order_id: str, after: str | None = None) -> None:
        await serve_websocket(websocket, hub, follower(order_id, after), send_timeout)

    @routes.get(
        "/orders/{order_id}/events",
        responses={200: {"content": {"text/event-stream": {}}, "description": "The order's events as they come"},
                   404: {"description": "Unknown order"}, 406: {"description": "Accept: text/event-stream needed"}},
    )  # fmt: skip
    async def follow_order_sse(
        order_id: str,
        after: str | None = None,
        accept: Annotated[str, Header()] = "",
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        if "text/event-stream" not in accept:
            return JSONResponse({"detail": "send Accept: text/event-stream (or open a WebSocket)"}, status_code=406)
        following = follower(order_id, last_event_id or after)
        try:
            await following.open()
        except UnknownOrder as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return EventStream(hub, following, send_timeout)

    return routes


def too_slow_reason(exc: Exception) -> str:
    return f"too slow: {exc}; reconnect with the last event id"[:120]  # close reasons fit in 123 bytes


async def serve_websocket(websocket: WebSocket, hub: PushHub, follower: Follower, send_timeout: float) -> None:
    await websocket.accept()
    # Listen for the client leaving (or uvicorn's 1012 on shutdown) from the start, the unknown-order wait too.
    watcher = asyncio.create_task(_stop_on_disconnect(websocket, follower))
    code, reason = NORMAL, "final"
    try:
        await follower.open()
        async with contextlib.aclosing(follower.messages()) as pushes:
            async for push in pushes:
                async with asyncio.timeout(send_timeout):
                    await websocket.send_text(push.text)
                hub.sent(push)
    except UnknownOrder as exc:
        code, reason = UNKNOWN_ORDER, str(exc)[:120]
    except TooSlow as exc:
        code, reason = TOO_SLOW, too_slow_reason(exc)
    except TimeoutError:
        code, reason = TOO_SLOW, too_slow_reason(TimeoutError(f"a send took over {send_timeout:g}s"))
    except (WebSocketDisconnect, OSError):
        return
    finally:
        watcher.cancel()
        follower.close()
    if follower.client_gone:
        return
    if hub.closing:
        code, reason = GOING_AWAY, "order service stopping"
    if code not in (NORMAL, UNKNOWN_ORDER):
        log.info("push connection closed: %s", reason, extra={"order_id": follower.order_id})
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await websocket.close(code, reason)


async def _stop_on_disconnect(websocket: WebSocket, follower: Follower) -> None:
    """Read (and ignore) what the client sends, until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    follower.stop()


def sse_frame(push: Push) -> bytes:
    if push.kind == "ping":
        return b": ping\n\n"
    head = f"id: {push.event_id}\n" if push.event_id else ""
    return f"{head}data: {push.text}\n\n".encode()


class EventStream(Response):
    """A response streaming one follower as text/event-stream, each send bounded in time."""

    media_type = "text/event-stream"

    def __init__(self, hub: PushHub, follower: Follower, send_timeout: float, retry_ms: int = 1000) -> None:
        super().__init__(status_code=200)
        self.hub = hub
        self.follower = follower
        self.send_timeout = send_timeout
        self.retry_ms = retry_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._stop_on_disconnect(receive))
        try:
            await self._send(send, {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            await self._body(send, f"retry: {self.retry_ms}\n\n".encode())
            try:
                async with contextlib.aclosing(self.follower.messages()) as pushes:
                    async for push in pushes:
                        await self._body(send, sse_frame(push))
                        self.hub.sent(push)
            except TooSlow as exc:
                dropped = json.dumps({"type": "dropped", "reason": too_slow_reason(exc)})
                await self._body(send, f"event: dropped\ndata: {dropped}\n\n".encode())
            await self._send(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except (TimeoutError, OSError):
            pass  # too slow to take even one frame in time, or gone: end the response
        finally:
            watcher.cancel()
            self.follower.close()

    async def _body(self, send: Send, chunk: bytes) -> None:
        await self._send(send, {"type": "http.response.body", "body": chunk, "more_body": True})

    async def _send(self, send: Send, message: Message) -> None:
        async with asyncio.timeout(self.send_timeout):
            await send(message)

    async def _stop_on_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.follower.stop()


_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies: do not buffer the stream
]
