"""The query commands' text: the seed's trace tree, tables, durations."""

from __future__ import annotations

import pytest

from cairn.collector._records import LogRecord, SpanEvent, SpanRecord
from cairn.collector._render import (
    Style,
    format_duration,
    parse_duration,
    render_logs,
    render_metric_names,
    render_metric_series,
    render_trace,
    render_trace_tree,
    render_traces,
    table,
)
from cairn.collector._store_model import MetricInfo, SeriesSummary, TraceSummary

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z
MS = 1_000_000


def span(
    span_id: str,
    parent: str | None,
    name: str,
    start_ms: float,
    duration_ms: float,
    service: str = "orders",
    **kw: object,
) -> SpanRecord:
    start = T0 + round(start_ms * MS)
    return SpanRecord(
        TRACE,
        span_id * 16,
        parent and parent * 16,
        name,
        service,
        start,
        start + round(duration_ms * MS),
        **kw,  # type: ignore[arg-type]
    )


def seed_spans() -> list[SpanRecord]:
    # Deliberately out of order: children are sorted by start time.
    return [
        span("c", "a", "inventory.check", 52, 100),
        span("d", "c", "GET /inventory/items", 60, 80, service="inventory", kind="server"),
        span("a", None, "GET /orders/123", 0, 152, kind="server"),
        span("b", "a", "db.query", 1, 50, kind="client"),
    ]


SEED_TREE = """\
GET /orders/123 (152ms)  orders
  ├─ db.query (50ms)  orders
  └─ inventory.check (100ms)  orders
     └─ GET /inventory/items (80ms)  inventory"""


def test_the_seed_trace_is_drawn_as_the_seed_draws_it() -> None:
    assert render_trace_tree(seed_spans()) == SEED_TREE


def test_ascii_tree_has_the_same_shape() -> None:
    assert render_trace_tree(seed_spans(), style=Style(ascii=True)) == (
        "GET /orders/123 (152ms)  orders\n"
        "  |- db.query (50ms)  orders\n"
        "  `- inventory.check (100ms)  orders\n"
        "     `- GET /inventory/items (80ms)  inventory"
    )
    assert render_trace_tree(seed_spans(), style=Style(ascii=True)).isascii()


def test_errors_events_and_orphans() -> None:
    spans = seed_spans()
    spans[1] = span(
        "d", "c", "GET /inventory/items", 60, 80, service="inventory",
        status="error", status_message="503 Service Unavailable",
    )  # fmt: skip
    spans[0].events = [
        SpanEvent(
            "breaker.state_changed", T0 + 90 * MS, {"cairn.policy": "inv", "cairn.to_state": "open"}
        ),
        SpanEvent("retry.scheduled", T0 + 64 * MS, {"cairn.policy": "inv", "cairn.attempt": 2}),
    ]
    spans[3].events = [
        SpanEvent("exception", T0 + 3 * MS, {"exception.type": "TimeoutError", "exception.message": "slow", "exception.stacktrace": "..."})
    ]  # fmt: skip
    spans.append(span("e", "f", "late.callback", 200, 0.25, service="worker"))
    assert render_trace_tree(spans) == (
        "GET /orders/123 (152ms)  orders\n"
        "  ├─ db.query (50ms)  orders\n"
        "  │    · exception TimeoutError: slow +2ms\n"
        "  └─ inventory.check (100ms)  orders\n"
        "     │ · retry.scheduled policy=inv attempt=2 +12ms\n"
        "     │ · breaker.state_changed policy=inv to_state=open +38ms\n"
        "     └─ GET /inventory/items (80ms)  inventory  ✗ error: 503 Service Unavailable\n"
        "late.callback (250µs)  worker  (parent ffffffffffffffff not received)"
    )


def test_a_parent_cycle_still_draws_every_span_once() -> None:
    spans = [span("a", "b", "one", 0, 1), span("b", "a", "two", 1, 1)]
    lines = render_trace_tree(spans).splitlines()
    assert sorted(line.split(" (")[0].strip(" └─") for line in lines) == ["one", "two"]


def test_whole_trace_has_a_header_the_tree_and_its_logs() -> None:
    logs = [
        LogRecord(T0 + 70 * MS, "inventory", "error", "lookup failed", TRACE, "d" * 16, {"sku": "B-1"}),
        LogRecord(T0 + 2 * MS, "orders", "info", "order placed", TRACE, "a" * 16, {"user_id": 123, "note": "two words"}),
    ]  # fmt: skip
    text = render_trace(TRACE, seed_spans(), logs, style=Style(width=100))
    assert text == (
        f"trace {TRACE} · 4 spans · 2 services · 152ms · 2023-11-14 22:13:20.000 UTC\n"
        "\n" + SEED_TREE + "\n"
        "\n"
        "logs (2)\n"
        "TIME          SERVICE    LEVEL  MESSAGE\n"
        '22:13:20.002  orders     info   order placed  user_id=123 note="two words"\n'
        "22:13:20.070  inventory  error  lookup failed  sku=B-1"
    )


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0ns"),
        (850, "850ns"),
        (250_000, "250µs"),
        (1_500_000, "1.5ms"),
        (12_500_000, "12.5ms"),
        (152_000_000, "152ms"),
        (999_999_999, "1s"),
        (1_500_000_000, "1.5s"),
        (125_000_000_000, "2m5s"),
        (120_000_000_000, "2m"),
        (3_720_000_000_000, "1h2m"),
    ],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_format_duration_ascii_microseconds() -> None:
    assert format_duration(250_000, ascii=True) == "250us"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("100ms", 100 * MS),
        ("1.5s", 1_500 * MS),
        ("2m", 120_000 * MS),
        ("250us", 250_000),
        ("250µs", 250_000),
        (" 3 h ", 3 * 3600 * 1000 * MS),
        ("7d", 7 * 86400 * 1000 * MS),
        (".5S", 500 * MS),
    ],
)
def test_parse_duration(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "100", "ms", "1.5 parsecs", "-1s", "1e3ms"])
def test_parse_duration_refuses_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration.*100ms, 1\.5s, 2m"):
        parse_duration(text)


def test_table_shrinks_flexible_columns_to_the_width() -> None:
    rows = [["a", "x" * 80, "short"], ["bb", "y" * 10, "z" * 50]]
    text = table(["K", "LONG", "TAIL"], rows, style=Style(width=60), flex=(1, 2))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert lines[1].startswith("a   xxxxx")
    assert "…" in lines[1]
    assert lines[0].split() == ["K", "LONG", "TAIL"]


def test_table_colours_only_when_asked() -> None:
    plain = render_logs(
        [LogRecord(T0, "orders", "error", "boom")], style=Style(width=80, color=False)
    )
    assert "\x1b[" not in plain
    coloured = render_logs(
        [LogRecord(T0, "orders", "error", "boom")], style=Style(width=80, color=True)
    )
    assert "\x1b[31merror\x1b[0m" in coloured


def test_logs_table() -> None:
    records = [
        LogRecord(
            T0 + 5 * MS, "orders", "warning", "slow", attributes={"logger": "x", "elapsed_ms": 12.5}
        )
    ]
    assert render_logs(records, style=Style(width=100)) == (
        "TIME                     SERVICE  LEVEL    MESSAGE\n"
        "2023-11-14 22:13:20.005  orders   warning  slow  elapsed_ms=12.5"
    )


def test_traces_table() -> None:
    rows = [
        TraceSummary(
            TRACE, "orders", "GET /orders/123", T0, 152 * MS, 4, 1, ["inventory", "orders"]
        )
    ]
    assert render_traces(rows, style=Style(width=200)) == (
        "TRACE                             START                    DURATION  ROOT                     SPANS  ERRORS  SERVICES\n"
        f"{TRACE}  2023-11-14 22:13:20.000     152ms  orders: GET /orders/123      4       1  inventory,orders"
    )


def test_metric_tables() -> None:
    names = [MetricInfo("requests_total", "counter", 3), MetricInfo("cpu", "gauge", 1)]
    assert render_metric_names(names, style=Style()) == (
        "NAME            KIND     SERIES\ncpu             gauge         1\nrequests_total  counter       3"
    )
    histogram = [
        SeriesSummary({"route": "/orders"}, None, 2.5, {"p50": 0.012, "p90": 0.05, "p99": 0.25}),
        SeriesSummary({"route": "/items"}, None, 0.1, None),
    ]
    assert render_metric_series("http_seconds", "histogram", histogram, style=Style()) == (
        "http_seconds (histogram)\n"
        "ROUTE     P50   P90    P99  RATE/S\n"
        "/orders  12ms  50ms  250ms     2.5\n"
        "/items      -     -      -     0.1"
    )
    gauge = [SeriesSummary({}, 7.0, None, None)]
    assert render_metric_series("cpu", "gauge", gauge, style=Style()) == (
        "cpu (gauge)\nSERIES  LATEST\n(all)        7"
    )


def test_a_terminal_that_cannot_encode_box_characters_gets_ascii(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    latin1 = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", latin1)
    monkeypatch.setenv("COLUMNS", "120")
    style = Style.for_terminal()
    assert (style.ascii, style.color, style.width) == (True, False, 120)


def test_control_characters_in_telemetry_never_reach_the_terminal() -> None:
    evil = "\x1b[2J\x1b]0;owned\x07"
    spans = [span("a", None, "GET /" + evil, 0, 1, service="svc\nfake line", status="error", status_message=evil)]  # fmt: skip
    spans[0].events = [SpanEvent("x" + evil, T0, {"k": evil})]
    logs = [LogRecord(T0, "orders", "info", "body" + evil, attributes={"a\x1b": "v\r"})]
    text = render_trace(TRACE, spans, logs, style=Style(width=300))
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\r" not in text
    assert (
        len(text.splitlines()) == 8
    )  # header, blank, span, event, blank, "logs (1)", 2 table lines
    assert "GET /\\x1b[2J\\x1b]0;owned\\x07 (1ms)  svc\\nfake line" in text
    # Colour is added after cleaning, so cleaned text may still be painted.
    assert "\x1b[" in render_trace(TRACE, spans, logs, style=Style(color=True))


def test_a_trace_deeper_than_python_recursion_is_drawn() -> None:
    spans = [
        SpanRecord(TRACE, f"{i:016x}", f"{i - 1:016x}" if i else None, f"s{i}", "orders", T0 + i, T0 + i + MS)
        for i in range(3000)
    ]  # fmt: skip
    lines = render_trace_tree(spans).splitlines()
    assert len(lines) == 3000
    assert lines[-1] == " " * (2 + 3 * 2998) + "└─ s2999 (1ms)  orders"
