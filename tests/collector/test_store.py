"""The store answers exactly as the reference evaluator, and keeps what it must."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cairn.collector import QueryError, parse_query
from cairn.collector._query_eval import (
    And,
    Between,
    Exists,
    Node,
    Not,
    Or,
    Query,
    Range,
    Term,
    _leaves,
)
from cairn.collector._records import LogRecord, SpanEvent, SpanRecord, iso
from cairn.collector._store import Store
from cairn.collector._store_plan import US, log_index, record_terms

SEC = 1_000_000_000

# -- random records and queries --------------------------------------------------------

_STRINGS = [
    "purchase_completed",
    "Purchase_Completed",
    "cache_hit",
    "123",
    "123.0",
    "true",
    "İstanbul",
    "straße",
    "\u0131i",
    "/items/{id}",
    "x" * 70,
    "",
    "B-42",
    "2026-01-02",
]
_SCALARS = st.one_of(
    st.sampled_from(_STRINGS),
    st.integers(-3, 130),
    st.sampled_from([123.0, 0.5, -0.0, 1e20, float("inf")]),
    st.booleans(),
    st.none(),
)
_KEYS = ["user_id", "event", "level", "http.route", "tags", "payload", "cached", "n", "deep"]


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.fixed_dictionaries(
        {"items": st.lists(st.fixed_dictionaries({"sku": _SCALARS}), max_size=2)}
    ),
    st.dictionaries(st.sampled_from(["route", "a.b", "status_code"]), _SCALARS, max_size=2),
    st.integers(0, 10).map(_nested),
)


@st.composite
def _logs(draw: st.DrawFn) -> list[LogRecord]:
    count = draw(st.integers(0, 25))
    times = draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count, unique=True))
    logs = []
    for time_s in times:
        logs.append(  # noqa: PERF401 - each record draws
            LogRecord(
                time_ns=time_s * SEC,
                service=draw(st.sampled_from(["checkout", "Cart", "pay"])),
                level=draw(st.sampled_from(["info", "ERROR", "debug"])),
                body=draw(st.sampled_from(_STRINGS)),
                trace_id=draw(st.sampled_from([None, "ab" * 16, "AB" * 16, "c" * 32])),
                span_id=draw(st.sampled_from([None, "1" * 16])),
                attributes=draw(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4)),
                resource=draw(st.sampled_from([{}, {"service.name": "shop", "zone": "eu"}])),
            )
        )
    return logs


_QFIELDS = st.sampled_from(
    [*_KEYS, "service", "message", "trace_id", "span_id", "time", "payload.items.sku",
     "deep.d.d", "http.status_code", "resource.zone", "http.a.b"]
)  # fmt: skip
_QVALUES = st.sampled_from(
    ["purchase_completed", "PURCHASE_completed", "123", "123.0", "1e2", "true", "0.5", "0",
     "1e20", "1e999", "x" * 70, "b-42", "istanbul", "İstanbul", "strasse", "\u0131", "I", "eu",
     "abababababababababababababababab", "2026", "bottom", "info", "error", "checkout"]
)  # fmt: skip
_PARTS = st.lists(
    st.sampled_from(["pur", "", "ed", "x", "i", "ß", "-4", "{", "0"]), min_size=2, max_size=3
)


def _leaf(depth: int) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(lambda f, v: Term(f, (v,)), _QFIELDS, _QVALUES),
        st.builds(lambda v: Term(None, (v,)), _QVALUES),
        st.builds(lambda f, p: Term(f, tuple(p)), st.one_of(st.none(), _QFIELDS), _PARTS),
        st.builds(Exists, _QFIELDS),
        st.builds(Range, _QFIELDS, st.sampled_from([">", ">=", "<", "<="]), _QVALUES),
        st.builds(Between, _QFIELDS, _QVALUES, _QVALUES),
    )


_NODES = st.recursive(
    _leaf(0),
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: Or(tuple(items))),
    ),
    max_leaves=6,
)


def _brute(logs: list[LogRecord], query: Query, since: int, until: int) -> list[LogRecord]:
    hits = [r for r in logs if since <= r.time_ns <= until and query.matches(r.document())]
    return sorted(hits, key=lambda r: r.time_ns, reverse=True)


def _small_segments(store: Store) -> Store:
    # Several segments even for a handful of records, so merging across them is tested.
    store._segment_records = {"logs": 4, "spans": 5, "points": 50}
    return store


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_logs(), _NODES, st.integers(0, 5000), st.integers(5000, 11_000), st.integers(1, 30))
def test_search_logs_equals_the_reference_evaluator(
    logs: list[LogRecord], root: Node, since_s: int, until_s: int, limit: int
) -> None:
    query = Query(root)
    store = _small_segments(Store(None))
    for i in range(0, len(logs), 3):
        store.add_logs(logs[i : i + 3])
    expected = _brute(logs, query, 0, 1 << 62)
    assert store.search_logs(query, limit=1000) == expected
    assert store.search_logs(query, limit=limit) == expected[:limit]
    window = _brute(logs, query, since_s * SEC, until_s * SEC)[:limit]
    assert (
        store.search_logs(query, since_ns=since_s * SEC, until_ns=until_s * SEC, limit=limit)
        == window
    )
    store.close()


@settings(max_examples=200, deadline=None)
@given(_logs())
def test_the_fast_index_path_equals_the_document_path(logs: list[LogRecord]) -> None:
    for log in logs:
        document = log.document()
        keys, complete, text = log_index(log)
        assert (keys, complete) == record_terms(document)
        leaves = set(_leaves(document)) - {iso(log.time_ns).casefold()}
        assert set(text.split(US)) - {""} == leaves - {""}


def test_query_text_and_errors() -> None:
    store = Store(None)
    store.add_logs(
        [
            LogRecord(1 * SEC, "shop", "info", "purchase_completed", attributes={"user_id": 123}),
            LogRecord(2 * SEC, "shop", "info", "purchase_completed", attributes={"user_id": 7}),
            LogRecord(3 * SEC, "shop", "error", "payment_declined", attributes={"user_id": 123}),
        ]
    )
    hits = store.search_logs("user_id:123 AND event:purchase_completed")
    assert [r.time_ns for r in hits] == [1 * SEC]
    assert [r.time_ns for r in store.search_logs(None)] == [3 * SEC, 2 * SEC, 1 * SEC]
    assert [r.time_ns for r in store.search_logs("declined")] == [3 * SEC]
    assert store.search_logs("", limit=0) == []
    with pytest.raises(QueryError, match="column"):
        store.search_logs("user_id:")
    assert store.services() == ["shop"]
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.search_logs(None)


# -- traces ----------------------------------------------------------------------------


def _span(trace: str, span: str, parent: str | None, service: str, start_s: float, end_s: float,
          status: str = "ok", **attributes: object) -> SpanRecord:  # fmt: skip
    return SpanRecord(
        trace, span, parent, f"op-{span}", service, int(start_s * SEC), int(end_s * SEC),
        status=status, attributes=dict(attributes),
        events=[SpanEvent("retry", int(start_s * SEC), {"attempt": 1})],
    )  # fmt: skip


def test_traces_are_summarised_by_root_and_found_by_any_span() -> None:
    store = _small_segments(Store(None))
    t1, t2, t3 = "a" * 32, "b" * 32, "c" * 32
    spans = [
        _span(t1, "1", None, "gateway", 10, 20),
        _span(t1, "2", "1", "payments", 11, 19, status="error", user_id=123),
        _span(t1, "3", "2", "db", 12, 13),
        # t2's root is missing: the span whose parent is absent stands in for it.
        _span(t2, "4", "gone", "cart", 30, 31),
        _span(t2, "5", "4", "db", 30.5, 35),
        _span(t3, "6", None, "gateway", 40, 40.1),
    ]
    store.add_spans(spans[:2])
    store.add_spans(spans[2:])
    store.add_logs([LogRecord(12 * SEC, "db", "info", "query", trace_id=t1)])
    summaries = store.find_traces()
    assert [s.trace_id for s in summaries] == [t3, t2, t1]
    one = summaries[2]
    assert (one.root_service, one.root_name, one.start_ns, one.duration_ns) == (
        "gateway", "op-1", 10 * SEC, 10 * SEC,
    )  # fmt: skip
    assert (one.span_count, one.error_count, one.services) == (3, 1, ["db", "gateway", "payments"])
    assert summaries[1].root_name == "op-4"
    assert summaries[1].duration_ns == 5 * SEC
    assert [s.trace_id for s in store.find_traces(service="db")] == [t2, t1]
    assert [s.trace_id for s in store.find_traces(status="error")] == [t1]
    assert [s.trace_id for s in store.find_traces(query="user_id:123")] == [t1]
    assert [s.trace_id for s in store.find_traces(operation="op-6")] == [t3]
    assert [s.trace_id for s in store.find_traces(min_duration_ns=4 * SEC)] == [t2, t1]
    assert [s.trace_id for s in store.find_traces(since_ns=30 * SEC, until_ns=35 * SEC)] == [t2]
    assert [s.trace_id for s in store.find_traces(limit=2)] == [t3, t2]
    trace = store.get_trace(t1)
    assert trace is not None
    assert [s.span_id for s in trace.spans] == ["1", "2", "3"]
    assert trace.spans[1] == spans[1]
    assert [log.body for log in trace.logs] == ["query"]
    assert trace.to_json()["spans"][0]["events"][0]["name"] == "retry"
    assert store.get_trace("f" * 32) is None
    assert store.services() == ["cart", "db", "gateway", "payments"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcd"),
            st.sampled_from(["api", "db"]),
            st.integers(0, 100),
            st.integers(0, 50),
            st.sampled_from(["ok", "error"]),
            st.integers(0, 3),
        ),
        max_size=20,
        unique_by=lambda t: t[2],
    ),
    st.sampled_from(["", "n:1", "NOT n:2", "status:error OR service:db"]),
    st.integers(1, 5),
)
def test_find_traces_equals_brute_force(
    rows: list[tuple[str, str, int, int, str, int]], text: str, limit: int
) -> None:
    spans = [
        _span(t * 32, f"{i:016x}", None, svc, start, start + dur, status, n=n)
        for i, (t, svc, start, dur, status, n) in enumerate(rows)
    ]
    store = _small_segments(Store(None))
    store.add_spans(spans)
    query = parse_query(text)
    newest: dict[str, int] = {}
    for span in spans:
        if (query.matches(span.document()) and span.service == "db") or (
            not text and span.service == "db"
        ):
            newest[span.trace_id] = max(newest.get(span.trace_id, 0), span.start_ns)
    chosen = sorted(newest, key=lambda t: newest[t], reverse=True)[:limit]
    starts = {t: min(s.start_ns for s in spans if s.trace_id == t) for t in chosen}
    expected = sorted(chosen, key=lambda t: (starts[t], t), reverse=True)
    found = store.find_traces(service="db", query=text, limit=limit)
    assert [s.trace_id for s in found] == expected


# -- retention, concurrency ------------------------------------------------------------


def _batch(start_s: int, count: int, service: str = "svc") -> list[LogRecord]:
    return [
        LogRecord((start_s + i) * SEC, service, "info", f"event-{i}", attributes={"i": i})
        for i in range(count)
    ]


def test_retention_by_age_drops_whole_old_segments_and_nothing_younger() -> None:
    store = Store(None, max_age_s=160)  # segments span at most 10 s of record time
    store.add_logs(_batch(0, 5))
    store.add_logs(_batch(100, 5))
    store.add_spans([_span("a" * 32, "1", None, "api", 1, 2)])
    store.add_samples([_sample("up", {}, 1, 1.0, "gauge")])
    assert store.enforce_retention(now_ns=150 * SEC) == 0
    assert store.stats().logs == 10
    # At 200 s the cutoff is 40 s: the first batch, the span and the sample are older.
    assert store.enforce_retention(now_ns=200 * SEC) == 7
    stats = store.stats()
    assert (stats.logs, stats.spans, stats.samples, stats.oldest_ns) == (5, 0, 0, 100 * SEC)
    assert [r.time_ns for r in store.search_logs(None)][-1] == 100 * SEC
    store.add_logs(_batch(300, 2))  # writing goes on after the active segment was dropped
    assert store.stats().logs == 7


def test_retention_by_size_drops_oldest_first_and_below_the_limit_nothing(tmp_path: Path) -> None:
    roomy = Store(tmp_path / "roomy.db", max_bytes=1 << 30)
    for k in range(20):
        roomy.add_logs(_batch(k * 100, 100))
    assert roomy.enforce_retention(now_ns=3000 * SEC) == 0
    assert roomy.stats().logs == 2000
    roomy.close()

    limit = 1_500_000
    store = Store(tmp_path / "tight.db", max_bytes=limit, max_age_s=1e9)
    big = "x" * 400
    for k in range(40):
        store.add_logs(
            [
                LogRecord((k * 100 + i) * SEC, "svc", "info", big, attributes={"k": k})
                for i in range(100)
            ]
        )
    before = store.stats()
    assert before.bytes > limit
    dropped = store.enforce_retention(now_ns=5000 * SEC)
    after = store.stats()
    assert dropped > 0
    assert after.logs == before.logs - dropped
    assert after.bytes <= limit
    newest = store.search_logs(None, limit=1)
    assert newest[0].attributes == {"k": 39}
    assert after.oldest_ns is not None
    assert after.oldest_ns > 0
    store.close()


def test_reads_run_concurrently_with_the_writer(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.db")
    store._segment_records = {"logs": 500, "spans": 500, "points": 500}
    errors: list[BaseException] = []
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        try:
            last = 0
            while not done.is_set():
                hits = store.search_logs("i:3 OR i:7", limit=10_000)
                assert all(r.attributes["i"] in (3, 7) for r in hits)
                assert len(hits) >= last  # a snapshot never loses what was committed
                last = len(hits)
                store.stats()
            seen.append(last)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for k in range(60):
        store.add_logs(_batch(k * 10, 10))
        if k == 30:
            store.enforce_retention(now_ns=10 * SEC)  # nothing to drop, but it runs
    done.set()
    for reader in readers:
        reader.join(timeout=60)
    assert not errors
    assert len(store.search_logs("i:3 OR i:7", limit=10_000)) == 120
    store.close()


def test_the_in_memory_store_is_shared_across_threads() -> None:
    store = Store(None)
    store.add_logs(_batch(0, 3))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(len(store.search_logs(None))))
    thread.start()
    thread.join(timeout=30)
    assert result == [3]


def _sample(name: str, labels: dict[str, str], t_s: float, value: float, kind: str,
            family: str = "") -> object:  # fmt: skip
    from cairn.collector._records import Sample

    return Sample(name, labels, int(t_s * SEC), value, kind, family or name)


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        Store(None, max_bytes=0)
