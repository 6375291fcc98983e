"""Replay real retail invoices (UCI "Online Retail") as orders against the running order API.

    python -m eventshop_tools.replay DATA [--limit N] [--rate R] [--url http://127.0.0.1:8000] [--wait 300]

DATA is the shared online_retail.csv.gz (gzip CSV; a plain .csv works too; default: `default_data()`). Each invoice
becomes one `POST /orders` with the header `Idempotency-Key: replay-<InvoiceNo>`, so running the
same replay again creates nothing new (and re-sends only what failed the first time). After
sending, the accepted orders are polled with `GET /orders/{id}` until each is final (dispatched or
cancelled) or `--wait` seconds pass. The summary table ends the run; the exit code is 0 only if
no accepted order was lost (still not final), no request got a 5xx and none failed to connect.
4xx answers are reported by reason but do not fail the run (they are the API refusing data).

Reading the file
----------------
- Rows are grouped by InvoiceNo, in order of each invoice's first row. The README says invoices
  are contiguous; that is true except for one: 542806 is split by a row of C542805. Rows of an
  invoice that appear again later are merged into it (in file order), since two orders with one
  idempotency key cannot both be placed. `SkipCounts.interleaved_invoices` counts such invoices.
- `limit` counts invoices *read* (distinct InvoiceNo, in order of first appearance), before any
  rule below, so `--limit 5000` means "the first 5,000 invoices of the file", of which fewer are
  sent. With a limit the rest of the file is still scanned (only for late rows of the kept
  invoices); rows of later invoices are not kept.

Rules (invoice level, first match wins; each skipped invoice counts under one reason)
- `adjustment`: InvoiceNo starts with `A` ("Adjust bad debt" bookkeeping, not an order).
- `cancellation`: InvoiceNo starts with `C`: a return of an earlier invoice, not an order.
- `unrecognised_invoice`: any other InvoiceNo that is not all digits (none in the data).
- `no_customer`: empty CustomerID (25% of rows); the API requires a customer.
- `no_product_lines`: no line is left after the line rules below.

Rules (line level, first match wins; judged only on invoices not skipped by one of the first four
invoice rules, so the lines of a `no_product_lines` invoice are counted, the lines of a
cancellation are not)
- `malformed`: Quantity is not an integer or UnitPrice is not a finite decimal (none in the data).
- `non_product`: the StockCode is not a product code (`is_product_code`: 5 digits optionally
  followed by letters, e.g. 85123A). Postage, fees, manual lines, samples, gift vouchers and the
  like (POST, DOT, M, D, C2, BANK CHARGES, AMAZONFEE, CRUK, PADS, S, B, DCGS…, gift_0001_…) are
  dropped, not sent as lines: they are not stock the inventory service can reserve.
- `non_positive_quantity`: Quantity <= 0 (returns booked on ordinary invoices).
- `negative_price`: UnitPrice < 0.
- `zero_price`: UnitPrice == 0 (free samples and adjustments).
- `price_precision`: more than 3 decimal places (the schema's scale; none in the data).

Mapping of a kept invoice
- customer_id = CustomerID as in the file ("17850"); country = Country as in the file (including
  "Unspecified", "EIRE", ...); currency = "GBP".
- One line per kept row, in file order. The same SKU twice in one invoice stays two lines (the
  file's rows, sometimes with different prices; the API accepts repeated SKUs).
- sku = StockCode; quantity = int(Quantity); unit_price = Decimal(UnitPrice string), never a
  float, sent in plain notation (`format(d, "f")`), so "2.55" and "0.001" go out exactly as read;
  description = Description as in the file (trailing spaces and the `Â£` artifact left as
  found), or null if empty. CustomerID and Country are the invoice's first row's (they never vary
  within an invoice in the data).

What this gives on online_retail.csv.gz (all 541,909 rows): 25,900 invoices read, 18,402 orders
(396,337 lines, the largest 541 lines: 576339); skipped 3,836 cancellation, 3,525 no_customer,
134 no_product_lines, 3 adjustment; lines dropped 1,554 non_product, 33 zero_price. Every
negative quantity and negative price in the file is on a cancellation, an adjustment or an
invoice without a customer, so those two line rules never fire on the real data; the 1,114-line
invoice 573585 has no CustomerID.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gzip
import io
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

import httpx
from tqdm import tqdm

# One definition of "a product", shared with the recommend service; re-exported for replay's callers.
from eventkit.products import NON_PRODUCT_CODES as NON_PRODUCT_CODES
from eventkit.products import NON_PRODUCT_PREFIXES as NON_PRODUCT_PREFIXES
from eventkit.products import is_product_code
from eventkit.settings import REPO_ROOT

CURRENCY = "GBP"
IDEMPOTENCY_PREFIX = "replay-"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_CONCURRENCY = 32
DEFAULT_WAIT_SECONDS = 300.0
FINAL_STATES = frozenset({"dispatched", "cancelled"})
SERVICES = ("accounting", "inventory", "shipping")
REQUIRED_COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "UnitPrice", "CustomerID", "Country")

_MILLI = Decimal(1000)

DATA_ENV = "EVENTSHOP_RETAIL_DATA"
_DATA_FILE = Path("shared") / "data" / "online_retail.csv.gz"


def default_data() -> Path:
    """The Online Retail file: $EVENTSHOP_RETAIL_DATA, else `../shared/data` beside the checkout, else the
    workplace's `/work/shared/data` (a scratch clone elsewhere has no `../shared`)."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    candidates = [REPO_ROOT.parent / _DATA_FILE, Path("/work") / _DATA_FILE]
    return next((c for c in candidates if c.is_file()), candidates[0])


# Event type prefix (normalised: lower case, no '-', '_' or namespace) -> producing service.
_SERVICE_PREFIXES = (("payment", "accounting"), ("stock", "inventory"), ("shipment", "shipping"))


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True, slots=True)
class ReplayLine:
    sku: str
    quantity: int
    unit_price: Decimal
    description: str | None

    def body(self) -> dict[str, Any]:
        return {
            "sku": self.sku,
            "quantity": self.quantity,
            "unit_price": format(self.unit_price, "f"),
            "description": self.description,
        }


@dataclass(frozen=True)
class ReplayOrder:
    invoice_no: str
    customer_id: str
    country: str | None
    items: tuple[ReplayLine, ...]

    @property
    def idempotency_key(self) -> str:
        return f"{IDEMPOTENCY_PREFIX}{self.invoice_no}"

    def body(self) -> dict[str, Any]:
        """The JSON body of `POST /orders`."""
        return {
            "customer_id": self.customer_id,
            "currency": CURRENCY,
            "country": self.country,
            "items": [line.body() for line in self.items],
        }


@dataclass
class SkipCounts:
    """What `load_orders` read and why it did not send something."""

    invoices_read: int = 0
    rows_read: int = 0  # rows belonging to the invoices read
    orders_kept: int = 0
    lines_kept: int = 0
    interleaved_invoices: int = 0  # invoices whose rows were not contiguous (merged)
    skipped_invoices: Counter[str] = field(default_factory=Counter)
    dropped_lines: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Invoice:
    """One invoice while reading: either skipped from its first row on, or collecting lines."""

    invoice_no: str
    customer_id: str
    country: str | None
    skip: str | None  # an invoice-level reason known from the first row
    items: list[ReplayLine] = field(default_factory=list)


class _Interner:
    """Shares equal SKUs, descriptions and prices between lines (the file repeats them a lot)."""

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.prices: dict[str, Decimal] = {}

    def string(self, text: str) -> str:
        return self.strings.setdefault(text, text)

    def price(self, text: str) -> Decimal:
        price = self.prices.get(text)
        if price is None:
            price = self.prices[text] = Decimal(text)
        return price


def _invoice_skip(invoice_no: str, customer_id: str) -> str | None:
    if invoice_no.startswith("A"):
        return "adjustment"
    if invoice_no.startswith("C"):
        return "cancellation"
    if not invoice_no.isdigit():
        return "unrecognised_invoice"
    if not customer_id:
        return "no_customer"
    return None


def _line_or_reason(row: dict[str, str], intern: _Interner) -> ReplayLine | str:
    try:
        quantity = int(row["Quantity"])
        price = intern.price(row["UnitPrice"])
    except (ValueError, InvalidOperation):
        return "malformed"
    if not price.is_finite():
        return "malformed"
    code = row["StockCode"]
    if not is_product_code(code):
        return "non_product"
    if quantity <= 0:
        return "non_positive_quantity"
    if price < 0:
        return "negative_price"
    if price == 0:
        return "zero_price"
    if (price * _MILLI) % 1 != 0:
        return "price_precision"
    description = row["Description"]
    return ReplayLine(intern.string(code), quantity, price, intern.string(description) if description else None)


def _open_text(path: Path) -> TextIO:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def load_orders(path: str | Path, limit: int | None = None) -> tuple[list[ReplayOrder], SkipCounts]:
    """The orders to send from the first `limit` invoices (all if None), and what was left out why.

    `limit` counts invoices read (distinct InvoiceNo in order of first appearance), before filtering:
    `orders_kept + sum(skipped_invoices.values()) == invoices_read`. The file is read once, as a
    stream; each row is turned into a line (or a drop reason) as it is read, so memory holds only
    the kept lines. CustomerID and Country are the invoice's first row's (they never vary within
    an invoice in the data).
    """
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    path = Path(path)
    counts = SkipCounts()
    intern = _Interner()
    invoices: dict[str, _Invoice] = {}
    interleaved: set[str] = set()
    last: str | None = None
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not the Online Retail CSV format, missing columns {missing}")
        for row in reader:
            invoice_no = row["InvoiceNo"]
            invoice = invoices.get(invoice_no)
            if invoice is None:
                if limit is not None and len(invoices) >= limit:
                    last = invoice_no
                    continue  # past the limit: read on only for late rows of the invoices kept
                customer = row["CustomerID"]
                invoice = invoices[invoice_no] = _Invoice(
                    invoice_no, customer, row["Country"] or None, _invoice_skip(invoice_no, customer)
                )
            elif invoice_no != last:
                interleaved.add(invoice_no)
            last = invoice_no
            counts.rows_read += 1
            if invoice.skip is None:
                line = _line_or_reason(row, intern)
                if isinstance(line, str):
                    counts.dropped_lines[line] += 1
                else:
                    invoice.items.append(line)

    orders: list[ReplayOrder] = []
    for invoice in invoices.values():
        skip = invoice.skip or (None if invoice.items else "no_product_lines")
        if skip is not None:
            counts.skipped_invoices[skip] += 1
            continue
        orders.append(ReplayOrder(invoice.invoice_no, invoice.customer_id, invoice.country, tuple(invoice.items)))
        counts.lines_kept += len(invoice.items)
    counts.invoices_read = len(invoices)
    counts.orders_kept = len(orders)
    counts.interleaved_invoices = len(interleaved)
    return orders, counts


# --------------------------------------------------------------------------------------------------
# Results and the summary (pure)


@dataclass
class SendResult:
    """The answer to one `POST /orders`."""

    invoice_no: str
    status: int | None  # HTTP status; None if the request failed (connection, timeout)
    reason: str | None = None  # short reason for anything but 2xx ("422 body.items.*.quantity: ...")
    order_id: str | None = None
    status_url: str | None = None
    lag: float = 0.0  # seconds the send started after its intended time (rate mode)


@dataclass
class OrderOutcome:
    """What polling `GET /orders/{id}` last saw for one accepted order."""

    order_id: str
    status: str | None = None  # None if never read successfully
    services: frozenset[str] = frozenset()  # services with events in the timeline
    polls: int = 0
    error: str | None = None  # the last failed poll, if any


@dataclass
class Summary:
    invoices_read: int = 0
    orders_kept: int = 0
    interleaved_invoices: int = 0
    skipped_invoices: Counter[str] = field(default_factory=Counter)
    dropped_lines: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    accepted: int = 0  # 2xx with an order_id: these are polled
    statuses: Counter[int] = field(default_factory=Counter)  # every HTTP status answered
    rejected: Counter[str] = field(default_factory=Counter)  # 4xx by reason
    server_errors: Counter[str] = field(default_factory=Counter)  # 5xx by reason
    request_errors: Counter[str] = field(default_factory=Counter)  # no answer, by exception
    other: Counter[str] = field(default_factory=Counter)  # 1xx/3xx, or 2xx without order_id
    final_states: Counter[str] = field(default_factory=Counter)  # dispatched/cancelled/pending/...
    services_seen: Counter[str] = field(default_factory=Counter)  # accepted orders per service
    all_services: int = 0  # accepted orders with events from accounting+inventory+shipping
    lost: int = 0  # accepted but not final
    max_lag: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.server_errors and not self.request_errors

    def format(self) -> str:
        rows: list[tuple[str, object]] = [
            ("invoices read", self.invoices_read),
            ("  interleaved (merged)", self.interleaved_invoices),
            ("orders to send", self.orders_kept),
        ]
        rows += _counter_rows("skipped invoices", self.skipped_invoices)
        rows += _counter_rows("dropped lines", self.dropped_lines)
        rows += [("sent", self.sent), ("202 accepted", self.statuses.get(202, 0))]
        if self.accepted != self.statuses.get(202, 0):
            rows.append(("accepted (any 2xx with order_id)", self.accepted))
        rows += _counter_rows("4xx", self.rejected)
        rows += _counter_rows("5xx", self.server_errors)
        rows += _counter_rows("request errors", self.request_errors)
        if self.other:
            rows += _counter_rows("other answers", self.other)
        if self.max_lag:
            rows.append(("max send lag (s)", f"{self.max_lag:.3f}"))
        rows += _counter_rows("order states at the end", self.final_states)
        rows += [(f"  with {s} events", self.services_seen.get(s, 0)) for s in SERVICES]
        rows.append(("with accounting+inventory+shipping events", self.all_services))
        rows.append(("lost (accepted, not final)", self.lost))
        rows.append(("result", "OK" if self.ok else "FAILED"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _counter_rows(title: str, counter: Counter[str]) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [(title, sum(counter.values()))]
    rows += [(f"  {key}", n) for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))]
    return rows


def summarize(
    sends: Sequence[SendResult],
    outcomes: Mapping[str, OrderOutcome],
    skips: SkipCounts | None = None,
) -> Summary:
    """Build the summary from the send results, the last poll per accepted order, and the load counts.

    An accepted send whose order_id is missing from `outcomes` counts as never read ("unknown").
    """
    s = Summary()
    if skips is not None:
        s.invoices_read = skips.invoices_read
        s.orders_kept = skips.orders_kept
        s.interleaved_invoices = skips.interleaved_invoices
        s.skipped_invoices = Counter(skips.skipped_invoices)
        s.dropped_lines = Counter(skips.dropped_lines)
    accepted_ids: set[str] = set()
    for r in sends:
        s.sent += 1
        s.max_lag = max(s.max_lag, r.lag)
        if r.status is None:
            s.request_errors[r.reason or "error"] += 1
            continue
        s.statuses[r.status] += 1
        if 200 <= r.status < 300 and r.order_id:
            s.accepted += 1
            accepted_ids.add(r.order_id)
        elif 400 <= r.status < 500:
            s.rejected[r.reason or str(r.status)] += 1
        elif r.status >= 500:
            s.server_errors[r.reason or str(r.status)] += 1
        else:
            s.other[f"{r.status} without order_id" if 200 <= r.status < 300 else str(r.status)] += 1
    # Count per order, not per send: two invoices deduplicated into one order are one order.
    for order_id in accepted_ids:
        outcome = outcomes.get(order_id)
        state = outcome.status if outcome and outcome.status else "unknown"
        s.final_states[state] += 1
        if state not in FINAL_STATES:
            s.lost += 1
        services = outcome.services if outcome else frozenset()
        s.services_seen.update(services)
        if all(svc in services for svc in SERVICES):
            s.all_services += 1
    # A 2xx without an order_id cannot be followed: it is lost too.
    s.lost += sum(n for key, n in s.other.items() if key.endswith("without order_id"))
    return s


def service_of(event_type: str) -> str | None:
    """The service producing an event type: Payment* -> accounting, Stock* -> inventory,
    Shipment* -> shipping (also accepts topic-style names like "orders.stock-reserved")."""
    name = event_type.rsplit(".", 1)[-1].replace("-", "").replace("_", "").lower()
    for prefix, service in _SERVICE_PREFIXES:
        if name.startswith(prefix):
            return service
    return None


def services_in(timeline: Any) -> frozenset[str]:
    """The services with at least one event in an order's timeline."""
    found: set[str] = set()
    if isinstance(timeline, list):
        for event in timeline:
            if isinstance(event, dict) and isinstance(event.get("type"), str):
                service = service_of(event["type"])
                if service:
                    found.add(service)
    return frozenset(found)


def reason_of(status: int, body: Any) -> str:
    """A short, countable reason for an error answer: status code + the gist of `detail`.

    Pydantic's error list becomes its first error's location (list indices as `*`) and type, so
    the same problem on different lines counts as one reason.
    """
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        err = detail[0]
        loc = ".".join("*" if isinstance(p, int) else str(p) for p in err.get("loc", []))
        kind = err.get("type") or err.get("msg") or "invalid"
        more = f" (+{len(detail) - 1} more)" if len(detail) > 1 else ""
        text = f"{loc}: {kind}{more}" if loc else f"{kind}{more}"
    elif detail is None or detail == "":
        text = ""
    else:
        text = str(detail)
    text = " ".join(text.split())
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{status} {text}".rstrip()


# --------------------------------------------------------------------------------------------------
# Sending and polling


# A connection the server closed as it was reused (keep-alive race) is retried: the Idempotency-Key makes
# a repeated POST safe, which is exactly what the key is for.
TRANSPORT_ATTEMPTS = 3


async def _post(client: httpx.AsyncClient, order: ReplayOrder, lag: float) -> SendResult:
    for attempt in range(1, TRANSPORT_ATTEMPTS + 1):
        try:
            response = await client.post(
                "/orders", json=order.body(), headers={"Idempotency-Key": order.idempotency_key}
            )
            break
        except httpx.TransportError as exc:
            if attempt == TRANSPORT_ATTEMPTS:
                return SendResult(order.invoice_no, None, type(exc).__name__, lag=lag)
            await asyncio.sleep(0.2 * attempt)
        except httpx.HTTPError as exc:
            return SendResult(order.invoice_no, None, type(exc).__name__, lag=lag)
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text or response.reason_phrase
    if 200 <= response.status_code < 300:
        order_id = body.get("order_id") if isinstance(body, dict) else None
        status_url = body.get("status_url") if isinstance(body, dict) else None
        return SendResult(
            order.invoice_no,
            response.status_code,
            order_id=str(order_id) if order_id else None,
            status_url=str(status_url) if status_url else None,
            lag=lag,
        )
    return SendResult(order.invoice_no, response.status_code, reason_of(response.status_code, body), lag=lag)


async def _send_all(
    client: httpx.AsyncClient,
    orders: Sequence[ReplayOrder],
    rate: float | None,
    concurrency: int,
    progress: bool,
) -> list[SendResult]:
    results: list[SendResult | None] = [None] * len(orders)
    bar = tqdm(total=len(orders), desc="sent", unit="order", disable=not progress, file=sys.stderr)
    accepted = 0

    def done(i: int, result: SendResult) -> None:
        nonlocal accepted
        results[i] = result
        accepted += result.order_id is not None
        bar.set_postfix(accepted=accepted, refresh=False)
        bar.update(1)

    try:
        if rate is None:
            # Closed loop: `concurrency` workers, each sends its next order when the last is answered.
            work = iter(enumerate(orders))

            async def worker() -> None:
                for i, order in work:
                    done(i, await _post(client, order, 0.0))

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(orders)) or 1)))
        else:
            # Open loop: order i is due at start + i/rate whatever the answers so far; at most
            # `concurrency` in flight, and the time a send waited past its due time is its lag.
            loop = asyncio.get_running_loop()
            limit = asyncio.Semaphore(concurrency)
            start = loop.time()

            async def send(i: int, order: ReplayOrder, due: float) -> None:
                async with limit:
                    done(i, await _post(client, order, max(0.0, loop.time() - due)))

            tasks: list[asyncio.Task[None]] = []
            for i, order in enumerate(orders):
                due = start + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(i, order, due)))
            await asyncio.gather(*tasks)
    finally:
        bar.close()
    return [r for r in results if r is not None]


async def _poll_one(client: httpx.AsyncClient, url: str, outcome: OrderOutcome) -> None:
    outcome.polls += 1
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        outcome.error = type(exc).__name__
        return
    if response.status_code != 200:
        outcome.error = str(response.status_code)
        return
    try:
        body = response.json()
    except ValueError:
        outcome.error = "not JSON"
        return
    if not isinstance(body, dict):
        outcome.error = "not an object"
        return
    outcome.error = None
    if isinstance(body.get("status"), str):
        outcome.status = body["status"]
    outcome.services = services_in(body.get("timeline"))


async def _await_final(
    client: httpx.AsyncClient,
    sends: Sequence[SendResult],
    wait_seconds: float,
    concurrency: int,
    poll_interval: float,
    progress: bool,
) -> dict[str, OrderOutcome]:
    """Poll in rounds, only orders not yet final, until all are final or the wait is over.

    There is always one round, so each accepted order's state is read at least once.
    """
    urls: dict[str, str] = {}
    for r in sends:
        if r.order_id and r.order_id not in urls:
            urls[r.order_id] = r.status_url or f"/orders/{r.order_id}"
    outcomes = {order_id: OrderOutcome(order_id) for order_id in urls}
    pending = list(urls)
    deadline = time.monotonic() + wait_seconds
    interval = poll_interval
    bar = tqdm(total=len(pending), desc="final", unit="order", disable=not progress, file=sys.stderr)

    async def worker(work: Iterator[str]) -> None:
        for order_id in work:  # shared by the workers of a round: each order is polled once
            await _poll_one(client, urls[order_id], outcomes[order_id])
            if outcomes[order_id].status in FINAL_STATES:
                bar.update(1)

    try:
        while pending:
            work = iter(pending)
            await asyncio.gather(*(worker(work) for _ in range(min(concurrency, len(pending)))))
            still = [oid for oid in pending if outcomes[oid].status not in FINAL_STATES]
            # Back off while nothing moves; poll briskly again as soon as something does.
            interval = poll_interval if len(still) < len(pending) else min(interval * 1.5, 5.0)
            pending = still
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            await asyncio.sleep(min(interval, left))
    finally:
        bar.close()
    return outcomes


async def replay(
    orders: Sequence[ReplayOrder],
    base_url: str = DEFAULT_URL,
    rate: float | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    wait_final_seconds: float = DEFAULT_WAIT_SECONDS,
    *,
    skips: SkipCounts | None = None,
    poll_interval: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
) -> Summary:
    """Send `orders` (at `rate` per second, or as fast as `concurrency` in-flight requests allow),
    then poll the accepted ones until final or `wait_final_seconds` pass; summarise everything."""
    if rate is not None and rate <= 0:
        raise ValueError("rate must be > 0")
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, pool=None), limits=limits) as client:
        sends = await _send_all(client, orders, rate, concurrency, progress)
        outcomes = await _await_final(client, sends, wait_final_seconds, concurrency, poll_interval, progress)
    return summarize(sends, outcomes, skips)


# --------------------------------------------------------------------------------------------------
# CLI


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eventshop_tools.replay",
        description="Replay Online Retail invoices as orders against the order API, then wait for them.",
    )
    parser.add_argument(
        "data", type=Path, nargs="?", default=default_data(), help="online_retail.csv.gz (or a plain .csv)"
    )
    parser.add_argument("--limit", type=_non_negative_int, help="read only the first N invoices")
    parser.add_argument("--rate", type=_positive_float, help="orders per second (default: as fast as taken)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"order API base URL (default {DEFAULT_URL})")
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT_SECONDS, help="seconds to wait for final")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="requests in flight")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(f"{args.data}: no such file")

    orders, skips = load_orders(args.data, args.limit)
    print(
        f"{skips.invoices_read} invoices read, {len(orders)} orders to send ({skips.lines_kept} lines)",
        file=sys.stderr,
    )
    summary = asyncio.run(
        replay(
            orders,
            args.url,
            rate=args.rate,
            concurrency=args.concurrency,
            wait_final_seconds=args.wait,
            skips=skips,
            progress=not args.no_progress,
        )
    )
    print(summary.format())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
