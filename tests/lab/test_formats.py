"""Parsers and writer: cairn JSON lines, Jepsen EDN maps, jepsen.util logs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.lab import (
    History,
    HistoryError,
    HistoryFormat,
    Op,
    OpType,
    detect_format,
    op_to_json,
    parse_history,
    read_history,
    write_jsonl,
)

# -- detection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        ('{"process":0,"type":"invoke","f":"read"}', HistoryFormat.JSONL),
        ('  { "process": 0}', HistoryFormat.JSONL),
        ("{:process 0, :type :invoke, :f :read}", HistoryFormat.EDN),
        ("INFO  jepsen.util - 3\t:invoke\t:read\tnil", HistoryFormat.JEPSEN_LOG),
        ("{}", None),
        ("process=0 type=invoke", None),
    ],
)
def test_detect_format(line: str, fmt: HistoryFormat | None) -> None:
    assert detect_format(line) == fmt


def test_undetectable_format_names_the_line() -> None:
    with pytest.raises(HistoryError, match=r"^f\.txt:2: cannot tell the history format"):
        parse_history("\nhello\n", source="f.txt")


def test_empty_text_is_an_empty_history() -> None:
    h = parse_history("\n  \n", source="e")
    assert len(h) == 0
    assert h.source == "e"


def test_explicit_format_and_bad_format_name() -> None:
    h = parse_history('{"process":0,"type":"invoke","f":"read"}', format="jsonl")
    assert h[0].f == "read"
    with pytest.raises(ValueError, match="unknown history format 'xml'"):
        parse_history("x", format="xml")
    with pytest.raises(HistoryError, match=r"bad edn event"):
        parse_history('{"process":0,"type":"invoke","f":"read"}', format=HistoryFormat.EDN)


# -- JSON lines -------------------------------------------------------------------


def test_jsonl_fields() -> None:
    text = (
        '{"process":0,"type":"invoke","f":"write","key":"x","value":3,"time":123}\n'
        "\n"
        '{"process":0,"type":"ok","f":"write","key":"x","value":3,"time":150,"extra":"ignored"}\n'
        '{"process":"n1","type":"invoke","f":"cas","value":[1,[2]]}\n'
    )
    h = parse_history(text, source="h.jsonl")
    assert h[0] == Op(0, OpType.INVOKE, "write", "x", 3, 123, 0)
    assert h[1].type is OpType.OK
    assert h[2].value == (1, (2,))
    assert h[2].process == "n1"
    assert h.lines == (1, 3, 4)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"process":0,"type":"invoke"', r"invalid JSON at column \d+"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"type":"invoke","f":"read"}', 'missing "process"'),
        ('{"process":0,"f":"read"}', 'missing "type"'),
        ('{"process":0,"type":"invoke"}', 'missing "f"'),
        ('{"process":true,"type":"invoke","f":"r"}', '"process" must be an integer or a name'),
        (
            '{"process":0,"type":"done","f":"r"}',
            '"type" must be invoke, ok, fail or info, not "done"',
        ),
        ('{"process":0,"type":"ok","f":""}', '"f" must be an operation name'),
        ('{"process":0,"type":"ok","f":"r","time":-1}', '"time" must be a non-negative integer'),
        ('{"process":0,"type":"ok","f":"r","time":1.5}', '"time" must be a non-negative integer'),
        ('{"process":0,"type":"ok","f":"r","value":{"a":1}}', "values must be null, booleans"),
    ],
)
def test_jsonl_errors_name_file_and_line(line: str, message: str) -> None:
    good = '{"process":9,"type":"invoke","f":"read"}\n'
    with pytest.raises(HistoryError, match=message) as info:
        parse_history(good + "\n" + line + "\n", source="run.jsonl")
    assert info.value.line == 3
    assert info.value.source == "run.jsonl"
    assert str(info.value).startswith("run.jsonl:3: bad jsonl event: ")


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=5,
)
ops = st.builds(
    Op,
    process=st.integers(0, 100) | st.sampled_from(["a", "nemesis"]),
    type=st.sampled_from(list(OpType)),
    f=st.sampled_from(["read", "write", "cas", "append"]),
    key=st.none() | st.text(max_size=3) | st.integers(),
    value=values,
    time=st.none() | st.integers(0, 2**62),
)


@given(st.lists(ops, max_size=8))
def test_jsonl_round_trip(events: list[Op]) -> None:
    out = io.StringIO()
    write_jsonl(events, out)
    assert parse_history(out.getvalue()) == History(events)


def test_op_to_json_is_compact_and_omits_absent_fields() -> None:
    assert (
        op_to_json(Op.invoke(0, "read")) == '{"process":0,"type":"invoke","f":"read","value":null}'
    )
    line = op_to_json(Op.ok(1, "write", [1, 2], key="x", time=5))
    assert line == '{"process":1,"type":"ok","f":"write","key":"x","value":[1,2],"time":5}'


def test_write_and_read_a_file(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    events = [Op.invoke(0, "write", "ü", key="k"), Op.ok(0, "write", "ü", key="k")]
    write_jsonl(events, path)
    assert read_history(path) == History(events)
    assert read_history(str(path)).source == str(path)


# -- EDN ----------------------------------------------------------------------------


def test_edn_kv_line() -> None:
    h = parse_history('{:process 9, :type :invoke, :f :append, :key "0", :value "x 9 0 y"}')
    assert h[0] == Op(9, OpType.INVOKE, "append", "0", "x 9 0 y", None, 0)


def test_edn_values() -> None:
    line = (
        r'{:process :nemesis :type :info :f :start :value [1 -2 +3 4N nil true false "a\"b\\c\n\t\u0041" [] [:k]]'
        r' :time 7 :index 3 :error "ignored"}'
    )
    op = parse_history(line)[0]
    assert op.process == "nemesis"
    assert type(op.process) is str
    assert op.value == (1, -2, 3, 4, None, True, False, 'a"b\\c\n\tA', (), ("k",))
    assert type(op.value[-1][0]) is str  # type: ignore[index]
    assert op.time == 7


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{:process 0 :type :ok :f :read :value "abc}', "an unterminated string at column 39"),
        ('{:process 0 :type :ok :f :read :value "\\q"}', r"unknown escape \\q"),
        ("{:process 0 :type :ok :f :read :value 1.5}", "unsupported EDN '1.5' at column 39"),
        ("{:process 0 :type :ok :f :read :value foo}", "unsupported EDN 'foo'"),
        ("{:process 0 :type :ok :f :read :value #{1}}", "unsupported EDN '#'"),
        ("{:process 0 :type :ok :f :read :value (1 2)}", r"unexpected '\('"),
        (
            "{:process 0 :type :ok :f :read :value [1 2}",
            r"'}' at column \d+ closes '\[' opened at column 39",
        ),
        ("{:process 0 :type :ok :f :read", r"'\{' opened at column 1 is never closed"),
        ("{:process 0 :type :ok :f :read} 3", "unexpected '3' at column 33 after the value"),
        ("{:process 0 :type :ok :f}", "has a key without a value"),
        ("{:process 0 :process 1 :type :ok :f :r}", "has the key process twice"),
        ("{:process 0 :type :ok :f :read :value :}", "bad keyword ':'"),
        ("{:process 0 :type :ok :f :read {1 2} 3}", "has an unsupported key"),
        ("]", r"unexpected '\]' at column 1"),
        ("{:type :ok :f :read}", "missing :process"),
        ("{:process 0 :type :done :f :read}", ":type must be invoke, ok, fail or info, not :done"),
        ("{:process 0 :type :ok :f 3}", ":f must be an operation name, not 3"),
    ],
)
def test_edn_errors(line: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        parse_history("{:process 1 :type :invoke :f :read}\n" + line, source="h.edn")
    assert info.value.line == 2
    assert str(info.value).startswith("h.edn:2: bad edn event: ")


def test_edn_non_map_line() -> None:
    with pytest.raises(HistoryError, match="expected an EDN map"):
        parse_history("{:process 1 :type :invoke :f :read}\n[1 2]")
    with pytest.raises(HistoryError, match=r"^<string>:1: bad edn event: no value$"):
        parse_history(",,,", format="edn")


def test_edn_vector_map_keys_are_frozen() -> None:
    op = parse_history("{:process 0 :type :ok :f :read [1 2] 3}")[0]
    assert op.f == "read"


# -- jepsen.util logs --------------------------------------------------------------------


def test_jepsen_log_lines() -> None:
    text = (
        "INFO  jepsen.util - 3\t:invoke\t:cas\t[3 0]\n"
        "INFO  jepsen.util - 3\t:info\t:cas\t:timed-out\n"
        "2017-03-14 10:20:30,123 INFO [worker 1] jepsen.util: 4\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 4\t:ok\t:read\t2\n"
        "INFO  jepsen.util - :nemesis\t:info\t:start\n"
    )
    h = parse_history(text, source="jepsen.log")
    assert h[0] == Op(3, OpType.INVOKE, "cas", None, (3, 0), None, 0)
    assert h[1].value == "timed-out"
    assert (h[2].process, h[2].f, h[2].value) == (4, "read", None)
    assert h[3].value == 2
    assert (h[4].process, h[4].value) == ("nemesis", None)
    calls = h.calls()
    assert [(c.f, c.indeterminate) for c in calls] == [("cas", True), ("read", False)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("INFO  jepsen.core - Running test", "expected a jepsen.util line"),
        ("INFO  jepsen.util - 3\t:invoke\t:read\t[1", r"'\[' opened at column 1 is never closed"),
        ("INFO  jepsen.util - 3\t:finish\t:read\tnil", ":type must be invoke, ok, fail or info"),
    ],
)
def test_jepsen_log_errors(line: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message) as info:
        parse_history("INFO  jepsen.util - 3\t:invoke\t:read\tnil\n" + line, source="j.log")
    assert info.value.line == 2


# -- files ---------------------------------------------------------------------------


def test_non_utf8_file_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "bin.log"
    path.write_bytes(b'{"process":0,"type":"invoke","f":"r","value":"\xff"}\n')
    with pytest.raises(HistoryError, match=r"bin\.log: not UTF-8 text"):
        read_history(path)


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_history(tmp_path / "absent.jsonl")


def test_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"process":0,"type":"invoke","f":"read"}\n'))
    h = read_history("-")
    assert h.source == "<stdin>"
    assert len(h) == 1


def test_shared_files_parse(porcupine: Path) -> None:
    etcd = read_history(porcupine / "jepsen-etcd" / "etcd_000.log")
    assert etcd[0] == Op(0, OpType.INVOKE, "read", None, None, None, 0)
    kv = read_history(porcupine / "kv" / "c01-ok.txt")
    assert kv[0].key is not None
    assert all(op.type in (OpType.INVOKE, OpType.OK) for op in kv)


def test_crlf_line_endings() -> None:
    text = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\r\nINFO  jepsen.util - 0\t:ok\t:read\t3\r\n"
    h = parse_history(text)
    assert [op.value for op in h] == [None, 3]
    edn = parse_history("{:process 0, :type :invoke, :f :read}\r\n")
    assert edn[0].f == "read"
