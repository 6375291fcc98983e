"""Unit tests of the real-data replay CLI: loading rules, exact prices, the summary (no network)."""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from eventshop_tools.replay import (
    NON_PRODUCT_CODES,
    OrderOutcome,
    ReplayOrder,
    SendResult,
    SkipCounts,
    default_data,
    is_product_code,
    load_orders,
    main,
    reason_of,
    replay,
    service_of,
    services_in,
    summarize,
)

REAL_DATA = default_data()
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"

# Rows in the file's exact format. Most are copied verbatim from online_retail.csv.gz; the rules
# that never fire on an invoice with a customer in the real data (negative quantity or price on an
# ordinary invoice) use real rows moved to such an invoice (marked "adapted").
ROWS = [
    # 536365: an ordinary invoice, kept whole (first rows of the file).
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",
    # C536379: a cancellation.
    "C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom",
    # 536381: quoted description with a comma; a postage line (non-product) dropped.
    '536381,82567,"AIRLINE LOUNGE,METAL SIGN",2,2010-12-01 09:41:00,2.1,15311,United Kingdom',
    "536381,POST,POSTAGE,1,2010-12-01 09:41:00,18.0,15311,United Kingdom",
    # 536589: no CustomerID (and a null Description, negative quantity, zero price).
    "536589,21777,,-10,2010-12-01 16:50:00,0.0,,United Kingdom",
    # 537197: zero-price line dropped, a real line kept (adapted: the second row).
    "537197,22841,ROUND CAKE TIN VINTAGE GREEN,1,2010-12-05 14:02:00,0.0,12647,Germany",
    "537197,22423,REGENCY CAKESTAND 3 TIER,10,2010-12-05 14:02:00,12.75,12647,Germany",
    # 550193: only a PADS line at 0.001 -> no product lines left.
    "550193,PADS,PADS TO MATCH ALL CUSHIONS,1,2011-04-15 09:27:00,0.001,13952,United Kingdom",
    # 561226 (adapted): a product line at the 3-decimal price 0.001 is kept exactly.
    "561226,15036,ASSORTED COLOURS SILK FAN,3,2011-07-26 10:13:00,0.001,15618,United Kingdom",
    # 542806: interleaved with C542805 (verbatim), merged into one order of 3 lines.
    "542806,48194,DOORMAT HEARTS,1,2011-02-01 11:19:00,7.95,12836,United Kingdom",
    "542806,21524,DOORMAT SPOTTY HOME SWEET HOME,1,2011-02-01 11:19:00,7.95,12836,United Kingdom",
    "C542805,22156,HEART DECORATION WITH PEARLS ,-1,2011-02-01 11:19:00,0.85,14606,United Kingdom",
    "542806,22692,DOORMAT WELCOME TO OUR HOME,2,2011-02-01 11:20:00,7.95,12836,United Kingdom",
    # A563186: "Adjust bad debt" with a negative price.
    "A563186,B,Adjust bad debt,1,2011-08-12 14:51:00,-11062.06,,United Kingdom",
    # 563300 (adapted): a return line (negative quantity) and a negative price on an ordinary
    # invoice, both dropped; the same SKU twice stays two lines; a gift voucher (non-product).
    "563300,22423,REGENCY CAKESTAND 3 TIER,-2,2011-08-13 10:00:00,12.75,14911,EIRE",
    "563300,85054,FRENCH ENAMEL POT W LID,1,2011-08-13 10:00:00,-11062.06,14911,EIRE",
    "563300,22156,HEART DECORATION WITH PEARLS ,4,2011-08-13 10:00:00,0.85,14911,EIRE",
    "563300,22156,HEART DECORATION WITH PEARLS ,2,2011-08-13 10:00:00,0.72,14911,EIRE",
    "563300,gift_0001_10,Dotcomgiftshop Gift Voucher Â£10.00,1,2011-08-13 10:00:00,8.33,14911,EIRE",
    # 22016 with the Â£ artifact is a product: its description goes out as found.
    "563301,22016,Dotcomgiftshop Gift Voucher Â£10.00,1,2011-08-13 10:05:00,8.33,14911,EIRE",
    # 570000 (adapted): a price with more than 3 decimal places (and a big one in plain notation).
    "570000,22423,REGENCY CAKESTAND 3 TIER,1,2011-10-01 10:00:00,0.0005,14911,Unspecified",
    "570000,22841,ROUND CAKE TIN VINTAGE GREEN,1,2011-10-01 10:00:00,38970.0,14911,Unspecified",
]


def write_csv(tmp_path: Path, rows: list[str], gz: bool = True) -> Path:
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    if gz:
        path = tmp_path / "retail.csv.gz"
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path = tmp_path / "retail.csv"
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[dict[str, ReplayOrder], SkipCounts]:
    orders, counts = load_orders(write_csv(tmp_path, ROWS))
    return {o.invoice_no: o for o in orders}, counts


def test_header_is_the_real_files() -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} not present")
    with gzip.open(REAL_DATA, "rt", encoding="utf-8") as f:
        assert f.readline().rstrip("\n") == HEADER


@pytest.mark.parametrize("code", ["85123A", "71053", "22423", "84952C", "15036", "35004C", "85099B"])
def test_product_codes(code: str) -> None:
    assert is_product_code(code)


@pytest.mark.parametrize(
    "code",
    [*sorted(NON_PRODUCT_CODES), "DCGS0003", "DCGSSGIRL", "DCGS0066P", "gift_0001_10", "", "1234", "123456"],
)
def test_non_product_codes(code: str) -> None:
    assert not is_product_code(code)


def test_kept_orders_and_counts(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, counts = loaded
    assert list(orders) == ["536365", "536381", "537197", "561226", "542806", "563300", "563301", "570000"]
    assert counts.invoices_read == 13
    assert counts.skipped_invoices == Counter(cancellation=2, no_customer=1, adjustment=1, no_product_lines=1)
    assert counts.orders_kept + sum(counts.skipped_invoices.values()) == counts.invoices_read
    # Lines are judged only on invoices not skipped for an invoice-level reason.
    assert counts.dropped_lines == Counter(
        non_product=3, zero_price=1, non_positive_quantity=1, negative_price=1, price_precision=1
    )
    assert counts.lines_kept == sum(len(o.items) for o in orders.values()) == 12
    assert counts.rows_read == len(ROWS)
    assert counts.interleaved_invoices == 1


def test_order_body_mapping(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, _ = loaded
    first = orders["536365"]
    assert first.idempotency_key == "replay-536365"
    assert first.body() == {
        "customer_id": "17850",
        "currency": "GBP",
        "country": "United Kingdom",
        "items": [
            {
                "sku": "85123A",
                "quantity": 6,
                "unit_price": "2.55",
                "description": "WHITE HANGING HEART T-LIGHT HOLDER",
            },
            {"sku": "71053", "quantity": 6, "unit_price": "3.39", "description": "WHITE METAL LANTERN"},
        ],
    }
    json.dumps(first.body())  # JSON-ready: no Decimal or float inside
    assert orders["536381"].body()["items"] == [
        {"sku": "82567", "quantity": 2, "unit_price": "2.1", "description": "AIRLINE LOUNGE,METAL SIGN"}
    ]
    assert [i.sku for i in orders["537197"].items] == ["22423"]
    assert orders["537197"].country == "Germany"


def test_prices_are_exact_decimals(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, _ = loaded
    (line,) = orders["561226"].items
    assert line.unit_price == Decimal("0.001")
    assert isinstance(line.unit_price, Decimal)
    assert line.body()["unit_price"] == "0.001"
    assert orders["536365"].items[0].unit_price == Decimal("2.55")  # not 2.54999999...
    # A large price goes out in plain notation, exactly as in the file.
    (big,) = orders["570000"].items
    assert big.body()["unit_price"] == "38970.0"
    assert orders["570000"].country == "Unspecified"


def test_same_sku_twice_stays_two_lines(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, _ = loaded
    lines = orders["563300"].items
    assert [(i.sku, i.quantity, i.unit_price) for i in lines] == [
        ("22156", 4, Decimal("0.85")),
        ("22156", 2, Decimal("0.72")),
    ]
    assert lines[0].description == "HEART DECORATION WITH PEARLS "  # trailing space as in the file


def test_description_as_found(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, _ = loaded
    assert orders["563301"].items[0].description == "Dotcomgiftshop Gift Voucher Â£10.00"


def test_null_description_becomes_none(tmp_path: Path) -> None:
    orders, _ = load_orders(write_csv(tmp_path, ["536999,21777,,10,2010-12-01 16:50:00,1.25,12345,France"]))
    assert orders[0].items[0].description is None
    assert orders[0].body()["items"][0]["description"] is None


def test_interleaved_invoice_is_merged(loaded: tuple[dict[str, ReplayOrder], SkipCounts]) -> None:
    orders, _ = loaded
    assert [i.sku for i in orders["542806"].items] == ["48194", "21524", "22692"]


def test_limit_counts_invoices_before_filtering(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ROWS)
    orders, counts = load_orders(path, limit=3)  # 536365 (kept), C536379 (skipped), 536381 (kept)
    assert [o.invoice_no for o in orders] == ["536365", "536381"]
    assert counts.invoices_read == 3
    assert counts.skipped_invoices == Counter(cancellation=1)
    assert counts.rows_read == 5
    assert load_orders(path, limit=0)[1].invoices_read == 0
    assert load_orders(path, limit=1000)[1] == load_orders(path)[1]


def test_limit_still_merges_late_rows_of_kept_invoices(tmp_path: Path) -> None:
    rows = [r for r in ROWS if r.startswith(("542806", "C542805"))]
    orders, counts = load_orders(write_csv(tmp_path, rows), limit=1)  # C542805 is past the limit
    assert counts.invoices_read == 1
    assert [o.invoice_no for o in orders] == ["542806"]
    assert len(orders[0].items) == 3
    assert counts.interleaved_invoices == 1


def test_plain_csv_reads_the_same(tmp_path: Path) -> None:
    gz = load_orders(write_csv(tmp_path, ROWS, gz=True))
    plain = load_orders(write_csv(tmp_path, ROWS, gz=False))
    assert gz == plain


def test_wrong_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing columns"):
        load_orders(path)


def test_first_5000_invoices_of_the_real_file() -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"{REAL_DATA} not present")
    n = 5000
    orders, counts = load_orders(REAL_DATA, limit=n)

    # Expectations computed independently from the raw CSV.
    rows_by_invoice: dict[str, list[list[str]]] = {}
    with gzip.open(REAL_DATA, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == HEADER.split(",")
        for row in reader:
            if row[0] in rows_by_invoice:
                rows_by_invoice[row[0]].append(row)
            elif len(rows_by_invoice) < n:
                rows_by_invoice[row[0]] = [row]
    product = re.compile(r"^[0-9]{5}[A-Za-z]*$")
    expected_lines: dict[str, int] = {}
    expected_skips: Counter[str] = Counter()
    for invoice, rows in rows_by_invoice.items():
        if invoice[0] in "AC":
            expected_skips["adjustment" if invoice[0] == "A" else "cancellation"] += 1
        elif rows[0][6] == "":
            expected_skips["no_customer"] += 1
        else:
            good = [r for r in rows if product.match(r[1]) and int(r[3]) > 0 and Decimal(r[5]) > 0]
            if good:
                expected_lines[invoice] = len(good)
            else:
                expected_skips["no_product_lines"] += 1

    assert counts.invoices_read == n
    assert counts.orders_kept == len(orders)
    assert counts.orders_kept + sum(counts.skipped_invoices.values()) == n
    assert counts.skipped_invoices == expected_skips
    assert counts.rows_read == sum(len(r) for r in rows_by_invoice.values())
    assert {o.invoice_no: len(o.items) for o in orders} == expected_lines
    assert max(len(o.items) for o in orders) == max(expected_lines.values())
    assert len({o.idempotency_key for o in orders}) == len(orders)
    for order in orders:
        assert order.items
        assert order.customer_id.isdigit()
        raw_prices = Counter(r[5] for r in rows_by_invoice[order.invoice_no])
        for line in order.items:
            assert isinstance(line.unit_price, Decimal)
            assert line.unit_price >= 0
            exponent = line.unit_price.as_tuple().exponent
            assert isinstance(exponent, int) and exponent >= -3
            assert line.quantity > 0
            assert raw_prices[line.body()["unit_price"]] > 0  # the price string as in the file


# --------------------------------------------------------------------------------------------------
# The summary (pure)


def test_reason_of() -> None:
    pydantic = {
        "detail": [
            {"type": "greater_than", "loc": ["body", "items", 3, "quantity"], "msg": "Input should be > 0"},
            {"type": "missing", "loc": ["body", "customer_id"], "msg": "Field required"},
        ]
    }
    assert reason_of(422, pydantic) == "422 body.items.*.quantity: greater_than (+1 more)"
    assert reason_of(413, {"detail": "Request body too large"}) == "413 Request body too large"
    assert reason_of(503, {"detail": "Kafka did not confirm"}) == "503 Kafka did not confirm"
    assert reason_of(502, "Bad Gateway") == "502 Bad Gateway"
    assert reason_of(404, {}) == "404"
    assert len(reason_of(400, {"detail": "x" * 500})) <= 84


def test_service_of() -> None:
    assert service_of("PaymentCaptured") == "accounting"
    assert service_of("PaymentDeclined") == "accounting"
    assert service_of("StockReserved") == "inventory"
    assert service_of("ShipmentDispatched") == "shipping"
    assert service_of("orders.stock-shortage") == "inventory"
    assert service_of("OrderPlaced") is None
    timeline = [
        {"type": "OrderPlaced", "event_id": "1"},
        {"type": "StockReserved", "event_id": "2"},
        {"type": "PaymentCaptured", "event_id": "3"},
        {"no": "type"},
    ]
    assert services_in(timeline) == {"inventory", "accounting"}
    assert services_in(None) == frozenset()


def test_summarize() -> None:
    everything = frozenset({"accounting", "inventory", "shipping"})
    sends = [
        SendResult("1", 202, order_id="o1", status_url="/orders/o1"),
        SendResult("2", 202, order_id="o2"),
        SendResult("3", 202, order_id="o3"),
        SendResult("4", 202, order_id="o4"),  # never read
        SendResult("5", 422, reason="422 body.items.*.quantity: greater_than"),
        SendResult("6", 422, reason="422 body.items.*.quantity: greater_than"),
        SendResult("7", 413, reason="413 Request body too large"),
        SendResult("8", 503, reason="503 Kafka did not confirm", lag=0.25),
        SendResult("9", None, reason="ConnectError"),
        SendResult("10", 200, order_id="o1"),  # the same order again (deduplicated by the API)
    ]
    outcomes = {
        "o1": OrderOutcome("o1", "dispatched", everything),
        "o2": OrderOutcome("o2", "cancelled", frozenset({"accounting", "inventory"})),
        "o3": OrderOutcome("o3", "pending", frozenset({"inventory"})),
    }
    skips = SkipCounts(invoices_read=20, orders_kept=10, skipped_invoices=Counter(cancellation=10))
    s = summarize(sends, outcomes, skips)
    assert s.sent == 10
    assert s.statuses[202] == 4
    assert s.accepted == 5
    assert s.rejected == Counter({"422 body.items.*.quantity: greater_than": 2, "413 Request body too large": 1})
    assert s.server_errors == Counter({"503 Kafka did not confirm": 1})
    assert s.request_errors == Counter(ConnectError=1)
    # Per distinct order: o1 once, although two sends returned it.
    assert s.final_states == Counter(dispatched=1, cancelled=1, pending=1, unknown=1)
    assert s.lost == 2
    assert s.all_services == 1
    assert s.services_seen == Counter(accounting=2, inventory=3, shipping=1)
    assert s.max_lag == 0.25
    assert s.invoices_read == 20
    assert s.skipped_invoices == Counter(cancellation=10)
    assert not s.ok
    table = s.format()
    assert "lost (accepted, not final)" in table
    assert "422 body.items.*.quantity: greater_than" in table
    assert table.splitlines()[-1].split() == ["result", "FAILED"]


def test_summarize_ok_and_accepted_without_id() -> None:
    s = summarize([SendResult("1", 202, order_id="o1")], {"o1": OrderOutcome("o1", "dispatched")})
    assert s.ok
    assert s.lost == 0
    s = summarize([SendResult("1", 202)], {})
    assert s.lost == 1
    assert not s.ok
    assert s.other == Counter({"202 without order_id": 1})
    assert summarize([], {}).ok


def test_replay_of_nothing_sends_nothing() -> None:
    s = asyncio.run(replay([], "http://127.0.0.1:9", wait_final_seconds=0, progress=False))
    assert s.sent == 0
    assert s.ok


def test_main_with_nothing_to_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_csv(tmp_path, ROWS)
    code = main([str(path), "--limit", "0", "--url", "http://127.0.0.1:9", "--wait", "0", "--no-progress"])
    assert code == 0
    assert "invoices read" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.csv.gz")])
