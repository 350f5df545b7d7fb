"""Reading and writing histories: cairn's JSON lines, Jepsen EDN maps, jepsen.util logs.

One event per line in each format (blank lines are skipped):

- ``jsonl`` (cairn's own): ``{"process":0,"type":"invoke","f":"write","key":"x","value":3,"time":123}``
  with ``key``, ``value`` and ``time`` (monotonic ns) optional;
- ``edn`` (Jepsen's history maps): ``{:process 9, :type :invoke, :f :append, :key "0", :value "x"}``;
- ``jepsen-log`` (``jepsen.util`` log lines):
  ``INFO  jepsen.util - 3<TAB>:invoke<TAB>:cas<TAB>[3 0]``.

The format is told from the first event line. Fields other than those above
are ignored, so a newer writer's extra fields do no harm.

The EDN reader is hand-written: the subset Jepsen histories use (maps,
vectors, keywords, strings with escapes, integers, nil, true, false) is a
few dozen lines, the PyPI EDN readers pull in a parser generator and give no
line-level errors, and the lab's core stays free of dependencies.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO

from cairn.lab._errors import HistoryError
from cairn.lab._history import History, Op, OpType, Value, freeze

__all__ = [
    "HistoryFormat",
    "detect_format",
    "op_to_json",
    "parse_history",
    "read_history",
    "write_jsonl",
]


class HistoryFormat(enum.StrEnum):
    """The history formats cairn reads."""

    JSONL = "jsonl"
    EDN = "edn"
    JEPSEN_LOG = "jepsen-log"


class _Keyword(str):
    """An EDN keyword, told apart from a string while parsing."""

    __slots__ = ()


class _ParseError(Exception):
    """A problem on one line; the caller adds the file and line."""


_TYPES = {t.value: t for t in OpType}

_LOG_LINE = re.compile(
    r"jepsen\.util\s*[-:]\s*(?P<process>\S+)\t(?P<type>\S+)\t(?P<f>\S+)(?:\t(?P<value>.*))?$"
)


def detect_format(line: str) -> HistoryFormat | None:
    """The format of a history whose first event line is ``line``, or ``None``."""
    text = line.strip()
    if text.startswith("{"):
        rest = text[1:].lstrip()
        if rest.startswith('"'):
            return HistoryFormat.JSONL
        if rest.startswith(":"):
            return HistoryFormat.EDN
        return None
    if "jepsen.util" in text:
        return HistoryFormat.JEPSEN_LOG
    return None


def parse_history(
    text: str, *, format: HistoryFormat | str | None = None, source: str = "<string>"
) -> History:
    """Parse ``text`` (one event a line) into a :class:`History`.

    ``format`` is detected from the first event line unless given. Raises
    :class:`HistoryError` naming ``source``, the line and what was wrong.
    """
    # Only "\n" ends a line: str.splitlines() would also split inside a JSON
    # string holding U+2028 or U+0085.
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not numbered:
        return History((), source=source, lines=())
    if format is None:
        first_line, first = numbered[0]
        fmt = detect_format(first)
        if fmt is None:
            raise HistoryError(
                "cannot tell the history format: the first event is neither a JSON object "
                '({"process": ...}), an EDN map ({:process ...}) nor a jepsen.util log line',
                source=source,
                line=first_line,
            )
    else:
        try:
            fmt = HistoryFormat(format)
        except ValueError:
            known = ", ".join(f.value for f in HistoryFormat)
            raise ValueError(f"unknown history format {format!r}; choose one of {known}") from None
    parse_line = _PARSERS[fmt]
    ops: list[Op] = []
    for number, line in numbered:
        try:
            ops.append(parse_line(line))
        except _ParseError as e:
            raise HistoryError(f"bad {fmt} event: {e}", source=source, line=number) from None
    return History(ops, source=source, lines=[n for n, _ in numbered])


def read_history(path: str | Path, *, format: HistoryFormat | str | None = None) -> History:
    """Read and parse the history file at ``path`` (``"-"`` reads standard input).

    Raises :class:`OSError` if it cannot be read and :class:`HistoryError` if
    it is not a history.
    """
    source = str(path)
    if source == "-":
        return parse_history(sys.stdin.read(), format=format, source="<stdin>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HistoryError(f"not UTF-8 text ({e.reason} at byte {e.start})", source=source) from e
    return parse_history(text, format=format, source=source)


def op_to_json(op: Op) -> str:
    """One event as a line of cairn's JSON-lines format (no newline)."""
    fields: dict[str, object] = {"process": op.process, "type": op.type.value, "f": op.f}
    if op.key is not None:
        fields["key"] = op.key
    fields["value"] = op.value
    if op.time is not None:
        fields["time"] = op.time
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def write_jsonl(ops: Iterable[Op], file: str | Path | IO[str]) -> None:
    """Write events in cairn's JSON-lines format to a path or an open text file."""
    if isinstance(file, str | Path):
        with Path(file).open("w", encoding="utf-8") as out:
            write_jsonl(ops, out)
        return
    for op in ops:
        file.write(op_to_json(op))
        file.write("\n")


# -- JSON lines ---------------------------------------------------------------


def _parse_json_line(line: str) -> Op:
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as e:
        raise _ParseError(f"invalid JSON at column {e.colno}: {e.msg}") from None
    if not isinstance(fields, dict):
        raise _ParseError(f"expected a JSON object, got {type(fields).__name__}")
    return _op_from_fields(fields, quote='"')


# -- EDN maps -----------------------------------------------------------------

_EDN_TOKEN = re.compile(
    r"""(?P<ws>[\s,]+)
      | (?P<open>[\[{])
      | (?P<close>[\]}])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<atom>[^\s,\[\]{}()"]+)""",
    re.VERBOSE | re.DOTALL,
)
_EDN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)N?")
_EDN_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_EDN_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "\\": "\\"}
_EDN_CONSTANTS: dict[str, object] = {"nil": None, "true": True, "false": False}
_CLOSERS = {"[": "]", "{": "}"}


def _edn_tokens(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    at = 0
    end = len(text)
    match = _EDN_TOKEN.match
    while at < end:
        m = match(text, at)
        if m is None:
            what = "an unterminated string" if text[at] == '"' else f"unexpected {text[at]!r}"
            raise _ParseError(f"{what} at column {at + 1}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append((kind, m.group(), at + 1))
        at = m.end()
    return tokens


def _edn_string(token: str, column: int) -> str:
    def unescape(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] == "u" and len(code) == 5:
            return chr(int(code[1:], 16))
        try:
            return _EDN_ESCAPES[code]
        except KeyError:
            raise _ParseError(f"unknown escape \\{code} in the string at column {column}") from None

    return _EDN_ESCAPE.sub(unescape, token[1:-1])


def _edn_atom(token: str, column: int) -> object:
    if token[0] == ":":
        if len(token) == 1 or token[1] == ":":
            raise _ParseError(f"bad keyword {token!r} at column {column}")
        return _Keyword(token[1:])
    if token in _EDN_CONSTANTS:
        return _EDN_CONSTANTS[token]
    if _EDN_INT.fullmatch(token):
        return int(token.rstrip("N"))
    raise _ParseError(
        f"unsupported EDN {token!r} at column {column} (this reader knows maps, vectors, "
        "keywords, strings, integers, nil, true and false)"
    )


def _parse_edn(text: str) -> object:
    tokens = _edn_tokens(text)
    if not tokens:
        raise _ParseError("no value")
    value, at = _edn_value(tokens, 0)
    if at != len(tokens):
        raise _ParseError(f"unexpected {tokens[at][1]!r} at column {tokens[at][2]} after the value")
    return value


def _edn_value(tokens: list[tuple[str, str, int]], at: int) -> tuple[object, int]:
    kind, token, column = tokens[at]
    if kind == "string":
        return _edn_string(token, column), at + 1
    if kind == "atom":
        return _edn_atom(token, column), at + 1
    if kind == "close":
        raise _ParseError(f"unexpected {token!r} at column {column}")
    closer = _CLOSERS[token]
    items: list[object] = []
    at += 1
    while True:
        if at >= len(tokens):
            raise _ParseError(f"{token!r} opened at column {column} is never closed")
        if tokens[at][0] == "close":
            if tokens[at][1] != closer:
                raise _ParseError(
                    f"{tokens[at][1]!r} at column {tokens[at][2]} closes {token!r} "
                    f"opened at column {column}"
                )
            at += 1
            break
        item, at = _edn_value(tokens, at)
        items.append(item)
    if token == "[":
        return items, at
    if len(items) % 2:
        raise _ParseError(f"the map at column {column} has a key without a value")
    mapping: dict[object, object] = {}
    for k, v in zip(items[::2], items[1::2], strict=True):
        k = freeze(k) if isinstance(k, list) else k
        if not isinstance(k, str | int | tuple) and k is not None:
            raise _ParseError(f"the map at column {column} has an unsupported key")
        if k in mapping:
            raise _ParseError(f"the map at column {column} has the key {k} twice")
        mapping[k] = v
    return mapping, at


def _parse_edn_line(line: str) -> Op:
    fields = _parse_edn(line)
    if not isinstance(fields, dict):
        raise _ParseError("expected an EDN map {:process ..., :type ..., :f ...}")
    return _op_from_fields(fields, quote=":")


# -- jepsen.util log lines ----------------------------------------------------


def _parse_log_line(line: str) -> Op:
    m = _LOG_LINE.search(line)
    if m is None:
        raise _ParseError(
            "expected a jepsen.util line: 'jepsen.util - PROCESS<TAB>:TYPE<TAB>:F<TAB>VALUE'"
        )
    process = _parse_edn(m["process"])
    kind = _parse_edn(m["type"])
    f = _parse_edn(m["f"])
    value = _parse_edn(m["value"]) if m["value"] is not None and m["value"].strip() else None
    fields: dict[object, object] = {"process": process, "type": kind, "f": f, "value": value}
    return _op_from_fields(fields, quote=":")


# -- shared -------------------------------------------------------------------


def _op_from_fields(fields: Mapping[object, object], *, quote: str) -> Op:
    def name(field: str) -> str:
        return f'"{field}"' if quote == '"' else f":{field}"

    for field in ("process", "type", "f"):
        if field not in fields:
            raise _ParseError(f"missing {name(field)}")
    process = fields["process"]
    if isinstance(process, bool) or not isinstance(process, int | str):
        raise _ParseError(f"{name('process')} must be an integer or a name, not {process!r}")
    kind = fields["type"]
    op_type = _TYPES.get(kind) if isinstance(kind, str) else None
    if op_type is None:
        raise _ParseError(f"{name('type')} must be invoke, ok, fail or info, not {_show(kind)}")
    f = fields["f"]
    if not isinstance(f, str) or not f:
        raise _ParseError(f"{name('f')} must be an operation name, not {_show(f)}")
    time = fields.get("time")
    if time is not None and (isinstance(time, bool) or not isinstance(time, int) or time < 0):
        raise _ParseError(f"{name('time')} must be a non-negative integer (ns), not {_show(time)}")
    try:
        key = _plain(fields.get("key"))
        value = _plain(fields.get("value"))
    except TypeError as e:
        raise _ParseError(str(e)) from None
    if isinstance(process, str):
        process = str(process)  # a keyword (:nemesis) becomes a plain name
    return Op(process, op_type, str(f), key, value, time)


def _plain(value: object) -> Value:
    # Keywords become plain strings, lists become tuples.
    if isinstance(value, _Keyword):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(item) for item in value)
    return freeze(value)


def _show(value: object) -> str:
    if isinstance(value, _Keyword):
        return f":{value}"
    return json.dumps(value) if isinstance(value, str) else repr(value)


_PARSERS = {
    HistoryFormat.JSONL: _parse_json_line,
    HistoryFormat.EDN: _parse_edn_line,
    HistoryFormat.JEPSEN_LOG: _parse_log_line,
}
