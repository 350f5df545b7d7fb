"""How the store narrows a query before checking it: index terms and text pre-filters.

Every log record is indexed twice when it is written:

- **terms**: one ``field<US>value`` key per scalar reachable by a field query — top-level
  keys, and dotted paths through nested mappings (lists flattened) — with the value
  normalised the way ``Term.matches`` compares it (strings case-folded, numbers in one
  canonical spelling, booleans ``true``/``false``). Strings longer than
  :data:`MAX_TERM_VALUE` characters are not indexed.
- **text**: every scalar of the document as full-text search sees it (``_leaves``),
  joined by a separator, so bare words can be pre-filtered with ``instr`` in SQL.

Both only *narrow*: a record the index selects is always checked with
``Query.matches(record.document())``, so the results equal the reference evaluator's.
What must hold is the other direction — a record the query matches is never left out —
and each function below says why it does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from cairn.collector._query_eval import (
    And,
    Node,
    Or,
    Term,
    _leaves,
    number,
)
from cairn.collector._records import LogRecord

__all__ = [
    "MAX_TERM_VALUE",
    "ColumnKeys",
    "IndexKeys",
    "Plan",
    "index_plan",
    "log_index",
    "record_terms",
    "record_text",
    "term_key",
    "text_filter",
]

MAX_TERM_VALUE = 64
MAX_DEPTH = 8
US = "\x1f"
# Document keys never indexed as terms: ``time`` and ``span_id`` are unique per record
# (a term each would double the index for queries no one types); ``trace_id`` has its own
# column; ``message`` repeats ``event``.
_SKIP = frozenset({"time", "span_id", "trace_id", "message"})


def term_key(path: str, value: str) -> int:
    """The 63-bit integer an index term is stored as (collisions only widen candidates)."""
    data = f"{path}{US}{value}".encode()
    return (zlib.crc32(data) << 31) ^ zlib.adler32(data)


def _canonical_number(value: float) -> str | None:
    """Integers (and integral floats) in one spelling; other floats are not indexed —
    their values are mostly unique (durations), so terms would cost much and serve little."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer():
        return str(int(value))
    return None


def _value_key(value: Any) -> str | None:
    """The key a stored scalar is indexed under (``None``: not indexed)."""
    kind = type(value)
    if kind is str:
        folded: str = value.casefold()
        return folded if len(folded) <= MAX_TERM_VALUE else None
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        return _canonical_number(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _canonical_number(value)
    if isinstance(value, str):
        return _value_key(str(value))
    return None  # other types never equal a query value


class _Terms:
    """Collects the keys of one record (see :func:`record_terms`)."""

    __slots__ = ("complete", "keys")

    def __init__(self) -> None:
        self.keys: set[int] = set()
        self.complete = True

    def walk(self, path: str, value: Any, depth: int) -> None:
        if isinstance(value, list | tuple):
            for item in value:
                if item is not None:
                    self.walk(path, item, depth)
        elif isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                self.complete = False
                return
            for key, sub in value.items():
                if sub is not None and isinstance(key, str) and "." not in key:
                    self.walk(f"{path}.{key}", sub, depth + 1)
        else:
            key = _value_key(value)
            if key is not None:
                self.keys.add(term_key(path, key))


def record_terms(document: Mapping[str, Any]) -> tuple[set[int], bool]:
    """The index keys of ``document``, and whether they are complete.

    A path step is a mapping key without a dot (``Term`` splits fields on dots, so a
    nested dotted key can never be reached by one); top-level keys are kept whole, as
    ``Term`` looks them up literally first. Indexing both a literal key and a nested path
    spelled the same only widens the candidates. Beyond :data:`MAX_DEPTH` levels the
    record is marked incomplete and joins every candidate set.
    """
    terms = _Terms()
    for key, value in document.items():
        if key not in _SKIP and value is not None:
            terms.walk(key, value, 0)
    return terms.keys, terms.complete


def _texts(value: Any, out: list[str]) -> None:
    """``_leaves`` appending to a list (the hot path of every write)."""
    kind = type(value)
    if kind is str:
        out.append(value.casefold())
    elif kind is int or kind is float:
        out.append(str(value).casefold())
    elif kind is dict:
        for item in value.values():
            _texts(item, out)
    elif kind is list or kind is tuple:
        for item in value:
            _texts(item, out)
    else:
        out.extend(_leaves(value))


# Every key LogRecord.document() sets over the attributes.
_LOG_FIELDS = frozenset(
    {"time", "service", "level", "event", "message", "trace_id", "span_id", "resource"}
)


def log_index(log: LogRecord) -> tuple[set[int], bool, str]:
    """``record_terms`` and ``record_text`` of ``log.document()`` without building it
    (the time leaf left out of the text: see :func:`text_filter`). A test holds the two
    paths equal."""
    terms = _Terms()
    out: list[str] = []
    for key, value in log.attributes.items():
        if key not in _LOG_FIELDS and value is not None:
            terms.walk(key, value, 0)
            _texts(value, out)
    for key, value in (("service", log.service), ("level", log.level), ("event", log.body)):
        terms.walk(key, value, 0)
        _texts(value, out)
    if log.resource:
        terms.walk("resource", log.resource, 0)
        _texts(log.resource, out)
    for value in (log.trace_id, log.span_id):
        if value is not None:
            _texts(value, out)
    return terms.keys, terms.complete, US.join(out)


def record_text(document: Mapping[str, Any]) -> str:
    """The document's full text: exactly the leaves ``Term`` searches, joined."""
    return US.join(_leaves(document))


def _query_keys(field: str, value: str) -> list[int] | None:
    """The index keys under which a record matching ``field:value`` must appear
    (``None`` when such a record may not be indexed: a long string, a fractional number)."""
    folded = value.casefold()
    if len(folded) > MAX_TERM_VALUE:
        return None
    keys = {folded}  # strings compare case-folded; "true"/"false" also match booleans
    numeric = number(value)
    if numeric is not None:
        canonical = _canonical_number(numeric)
        if canonical is None:
            return None
        keys.add(canonical)
    field = "event" if field == "message" else field
    return [term_key(field, key) for key in sorted(keys)]


class IndexKeys:
    """Candidates: the union of the posting lists of ``keys``."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys


class ColumnKeys:
    """Candidates: the records whose ``trace_id`` column folds to ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value


Plan = IndexKeys | ColumnKeys | tuple[str, list["Plan"]]


def index_plan(node: Node | None) -> Plan | None:
    """A plan whose candidates include every record ``node`` matches (``None``: any)."""
    if isinstance(node, Term):
        if node.field is None or node.wildcard or node.field in ("time", "span_id"):
            return None
        if node.field == "trace_id":
            value = node.parts[0]
            # lower() in SQLite folds ASCII only, so other ids are scanned.
            return ColumnKeys(value.lower()) if value.isascii() else None
        keys = _query_keys(node.field, node.parts[0])
        return None if keys is None else IndexKeys(keys)
    if isinstance(node, And):
        parts = [p for p in (index_plan(item) for item in node.items) if p is not None]
        return ("and", parts) if parts else None
    if isinstance(node, Or):
        alts = [index_plan(item) for item in node.items]
        if any(p is None for p in alts):
            return None
        return ("or", [p for p in alts if p is not None])
    return None  # NOT, ranges, existence and full text cannot narrow through terms


def _pieces(part: str) -> Iterator[str]:
    """Substrings every leaf matching ``part`` under ``re.IGNORECASE`` must contain.

    Leaves are case-folded; for an ASCII character other than ``i`` (which IGNORECASE
    also matches to the dotless i, U+0131) the only case-folded text it matches is its own
    lower case — checked over all of Unicode — so ASCII runs without ``i`` are safe.
    """
    run: list[str] = []
    for ch in part:
        if ch.isascii() and ch not in "iI":
            run.append(ch.lower())
        elif run:
            yield "".join(run)
            run = []
    if run:
        yield "".join(run)


# Every character of a case-folded ISO time ("2026-01-02t03:04:05.123456z"): the text
# column leaves the time out, so a needle made only of these may lie in it.
_TIME_CHARS = frozenset("0123456789-:.tz")


def _term_filter(node: Term) -> list[str]:
    needles = _term_needles(node)
    if node.field == "time" or all(set(n) <= _TIME_CHARS for n in needles):
        return []
    return needles


def _term_needles(node: Term) -> list[str]:
    if node.field is None and not node.wildcard:
        needle = node.parts[0].casefold()  # ``needle in leaf``: exactly a substring
        return [needle] if needle else []
    if node.wildcard:
        return [piece for part in node.parts for piece in _pieces(part)]
    value = node.parts[0]
    if number(value) is not None:
        return []  # a number matches other spellings of itself
    folded = value.casefold()
    return [folded] if folded else []


def text_filter(node: Node | None) -> tuple[str, list[str]] | None:
    """An SQL condition on the ``text`` column that every match of ``node`` satisfies."""
    if isinstance(node, Term):
        needles = _term_filter(node)
        if not needles:
            return None
        return " AND ".join(["instr(text, ?) > 0"] * len(needles)), needles
    if isinstance(node, And | Or):
        subs = [text_filter(item) for item in node.items]
        if isinstance(node, And):
            kept = [s for s in subs if s is not None]
            if not kept:
                return None
        else:
            if any(s is None for s in subs):
                return None
            kept = [s for s in subs if s is not None]
        glue = " AND " if isinstance(node, And) else " OR "
        sql = glue.join(f"({s[0]})" for s in kept)
        return sql, [p for s in kept for p in s[1]]
    return None  # NOT, ranges and existence say nothing about the text
