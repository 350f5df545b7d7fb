"""The fast span write path: checked-then-walked protobuf, store rows, multi-row inserts,
the writer's linger. Each fast piece must give exactly what the plain path gives."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from receiver_support import wait_for

from cairn.collector import _otlp_rows, _store_rows
from cairn.collector._ingest import IngestQueue, Writer
from cairn.collector._otlp import OtlpDecodeError, decode_spans
from cairn.collector._otlp_rows import parse_spans
from cairn.collector._records import SpanRecord
from cairn.collector._store import Store
from cairn.collector._store_rows import SpanRows, insert_rows, span_rows


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _values() -> list[KeyValue]:
    nested = AnyValue()
    nested.kvlist_value.values.extend(
        [_kv("a", AnyValue(int_value=1)), _kv("b", AnyValue(string_value="x"))]
    )
    array = AnyValue()
    array.array_value.values.extend([AnyValue(bool_value=True), AnyValue(double_value=2.5)])
    return [
        _kv("s", AnyValue(string_value="text")),
        _kv("i", AnyValue(int_value=-(2**62))),
        _kv("d", AnyValue(double_value=0.1)),
        _kv("nan", AnyValue(double_value=math.nan)),
        _kv("b", AnyValue(bool_value=False)),
        _kv("raw", AnyValue(bytes_value=b"\x00\xff")),
        _kv("list", array),
        _kv("map", nested),
        _kv("empty", AnyValue()),
        _kv("s", AnyValue(string_value="later wins")),
        _kv("big", AnyValue(string_value="y" * 1000)),  # too big for the attribute cache
    ]


def _request() -> bytes:
    request = ExportTraceServiceRequest()
    first = request.resource_spans.add()
    first.resource.attributes.extend(
        [_kv("service.name", AnyValue(string_value="orders")), *_values()[:3]]
    )
    n = 0
    for scope_index in range(2):
        scope = first.scope_spans.add()
        scope.scope.name = f"scope{scope_index}"
        for kind in (0, 1, 2, 3, 4, 5, 9):
            n += 1
            span = scope.spans.add(
                trace_id=n.to_bytes(16, "big"),
                span_id=n.to_bytes(8, "big"),
                name=f"op{n}",
                kind=kind,  # type: ignore[arg-type]
                start_time_unix_nano=1_700_000_000_000_000_000 + n,
                end_time_unix_nano=1_700_000_000_000_000_000 + 10 * n,
            )
            if n % 2:
                span.parent_span_id = (n + 100).to_bytes(8, "big")
            span.status.code = n % 4  # type: ignore[assignment]
            span.status.message = "bad" if n % 4 == 2 else ""
            span.attributes.extend(_values() if n % 3 else [])
            for e in range(n % 3):
                event = span.events.add(name=f"ev{e}", time_unix_nano=n + e)
                event.attributes.extend(_values()[e : e + 2])
    request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=b"\x07" * 16, span_id=b"\x08" * 8, name="no resource"
    )
    return request.SerializeToString()


def _same(a: list[SpanRecord], b: list[SpanRecord]) -> None:
    # NaN != NaN, so == would fail on equal records: their reprs spell NaN the same way.
    assert repr(a) == repr(b)


@pytest.fixture
def cold_cache() -> Iterator[None]:
    _otlp_rows._cache.clear()
    yield
    _otlp_rows._cache.clear()


@pytest.mark.usefixtures("cold_cache")
def test_fast_walk_gives_exactly_the_decoded_spans_cold_and_warm() -> None:
    body = _request()
    expected = decode_spans(body)
    assert len(expected) == 15
    for _ in range(2):  # the second walk is served from the attribute cache
        walked = parse_spans(body)
        _same(list(walked), expected)
        assert [row[:8] for row in walked.rows] == [row[:8] for row in span_rows(expected)]
    assert expected[-1].service == "unknown_service"
    assert expected[0].attributes["s"] == "later wins"
    assert not any(len(raw) > 256 for raw in _otlp_rows._cache)


def test_parse_spans_counts_now_and_walks_on_first_use() -> None:
    body = _request()
    rows = parse_spans(body)
    assert len(rows) == 15
    assert "pending" in repr(rows)
    assert rows[0].name == "op1"
    assert "made" in repr(rows)
    assert [s.name for s in rows[1:3]] == ["op2", "op3"]


@pytest.mark.parametrize(
    ("trace_id", "span_id", "message"),
    [(b"\x01" * 8, b"\x02" * 8, "trace_id must be 16 bytes, got 8"),
     (b"\x01" * 16, b"", "span_id must be 8 bytes, got 0")],
)  # fmt: skip
def test_parse_spans_refuses_bad_ids_at_once(trace_id: bytes, span_id: bytes, message: str) -> None:
    request = ExportTraceServiceRequest()
    spans = request.resource_spans.add().scope_spans.add().spans
    spans.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)
    spans.add(trace_id=trace_id, span_id=span_id)
    with pytest.raises(OtlpDecodeError, match=message):
        parse_spans(request.SerializeToString())
    with pytest.raises(OtlpDecodeError, match=r"malformed ExportTraceServiceRequest \(protobuf\)"):
        parse_spans(b"\xff\xff\xff\xff")
    assert len(parse_spans(b"")) == 0


def test_mirror_messages_keep_the_otlp_wire_format() -> None:
    real_pool = ExportTraceServiceRequest.DESCRIPTOR.file.pool
    mirror_file = _otlp_rows._Request.DESCRIPTOR.file
    length_delimited = {"TYPE_MESSAGE", "TYPE_BYTES", "TYPE_STRING"}
    varint = {"TYPE_ENUM", "TYPE_INT32"}
    for real_name, mirror_name in _otlp_rows._MIRRORED.items():
        real = real_pool.FindMessageTypeByName(real_name)
        mirror = mirror_file.message_types_by_name[mirror_name]
        assert {f.number for f in mirror.fields} == {f.number for f in real.fields}
        for field in real.fields:
            twin = mirror.fields_by_number[field.number]
            kinds = {_type_name(field.type), _type_name(twin.type)}
            assert len(kinds) == 1 or kinds <= length_delimited or kinds <= varint, field.name
            assert (twin.is_repeated, twin.is_packed) == (field.is_repeated, field.is_packed)


def _type_name(number: int) -> str:
    from google.protobuf.descriptor import FieldDescriptor

    return next(
        k for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_") and v == number
    )


@pytest.mark.parametrize("max_params", [32766, 9])  # 9: 4 rows of 2 per statement at most
@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 20, 33])
def test_insert_rows_writes_every_row_in_order(
    monkeypatch: pytest.MonkeyPatch, count: int, max_params: int
) -> None:
    monkeypatch.setattr(_store_rows, "CHUNK", 8)
    con = sqlite3.connect(":memory:")
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, max_params)
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b TEXT)")
    rows = [(i, f"r{i}") for i in range(count)]
    insert_rows(con, "t", "(a, b)", rows)
    assert con.execute("SELECT a, b FROM t ORDER BY id").fetchall() == rows
    con.close()


def test_store_reads_back_fast_rows_as_it_reads_records() -> None:
    body = _request()
    fast, plain = Store(None), Store(None)
    try:
        fast.add_spans(parse_spans(body))
        plain.add_spans(decode_spans(body))
        for trace_id in [n.to_bytes(16, "big").hex() for n in (1, 2, 5, 14)] + ["07" * 16]:
            a, b = fast.get_trace(trace_id), plain.get_trace(trace_id)
            assert a is not None
            assert b is not None
            assert repr(a.to_json()) == repr(b.to_json())
        query = "kind:server OR status:error"
        found = [t.to_json() for t in fast.find_traces(query=query)]
        assert len(found) == 5
        assert found == [t.to_json() for t in plain.find_traces(query=query)]
        assert fast.services() == plain.services()
    finally:
        fast.close()
        plain.close()


def test_take_lingers_for_more_records_but_not_past_enough_or_closing() -> None:
    queue = IngestQueue(100)
    queue.offer("spans", [1])
    start = time.monotonic()
    assert queue.take(50, timeout=0, min_records=10, linger=0.05) == [("spans", [1])]
    assert time.monotonic() - start >= 0.04  # it waited for more before giving up

    taken: list[object] = []
    thread = threading.Thread(
        target=lambda: taken.append(queue.take(50, timeout=30, min_records=3, linger=30))
    )
    thread.start()
    queue.offer("spans", [1])
    queue.offer("spans", [2, 3])  # enough: the 30 s linger ends now
    thread.join(20)
    assert taken == [[("spans", [1]), ("spans", [2, 3])]]

    queue.offer("logs", ["x"])
    thread = threading.Thread(
        target=lambda: taken.append(queue.take(50, timeout=30, min_records=3, linger=30))
    )
    thread.start()
    wait_for(lambda: thread.is_alive(), what="the take to wait")
    queue.close()  # closing ends the linger at once
    thread.join(20)
    assert taken[-1] == [("logs", ["x"])]
    assert queue.take(50, timeout=0) is None


def test_writer_keeps_good_spans_when_a_batch_cannot_be_walked() -> None:
    store = Store(None)
    queue = IngestQueue(1000)
    writer = Writer(store, queue, linger_s=0.5, min_batch_records=16)

    def broken() -> list[_store_rows.SpanRow]:
        raise RuntimeError("bug in the walk (test)")

    queue.offer("spans", SpanRows(3, broken))
    queue.offer("spans", parse_spans(_request()))
    writer.start()
    try:
        wait_for(lambda: writer.written["spans"] == 15, what="the good batch written")
        assert writer.lost["spans"] == 3
        assert "bug in the walk" in writer.last_error
        assert store.stats().spans == 15
    finally:
        writer.stop()
        store.close()
