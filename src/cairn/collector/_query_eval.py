"""The query tree: what each node matches, and how it prints back as query text.

Nodes are frozen slotted records; ``Query`` wraps a root. Matching rules (also in
``docs/query-language.md``):

- a field is looked up first as a literal key (``"http.route"``), then as a path through
  nested mappings (``http`` → ``route``); ``None`` counts as absent, and a list matches
  when any element does;
- values compare with type awareness: ``123`` matches the int and the string ``"123"``,
  ``true``/``false`` match booleans, strings compare case-insensitively;
- a bare term is a case-insensitive substring of any scalar value anywhere in the record.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["And", "Between", "Exists", "Node", "Not", "Or", "Query", "Range", "Term"]

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL = frozenset('()[]:<>"\\*')


def number(text: str) -> int | float | None:
    """``text`` as a number if it spells one (never ``nan``/``inf``, which are words)."""
    if not _NUMBER.fullmatch(text):
        return None
    if text.lstrip("+-").isdigit():
        return int(text)
    return float(text)


def _flat(value: Any) -> Iterator[Any]:
    if isinstance(value, list | tuple):
        for item in value:
            yield from _flat(item)
    elif value is not None:
        yield value


def _values(record: Mapping[str, Any], field: str) -> Iterator[Any]:
    """The non-``None`` values of ``field``; lists count element by element."""
    if field in record:
        yield from _flat(record[field])
        return
    found: list[Any] = [record]
    for part in field.split("."):
        found = [v[part] for v in _flat(found) if isinstance(v, Mapping) and part in v]
    yield from _flat(found)


def _leaves(value: Any) -> Iterator[str]:
    """Every scalar under ``value``, as lower-case text, for full-text search."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, bool):
        yield "true" if value else "false"
    elif isinstance(value, str | int | float):
        yield str(value).casefold()


def _equals(actual: Any, expected: str) -> bool:
    if isinstance(actual, bool):
        return expected.casefold() == ("true" if actual else "false")
    if isinstance(actual, int | float):
        wanted = number(expected)
        return wanted is not None and actual == wanted
    if isinstance(actual, str):
        return actual.casefold() == expected.casefold()
    return False


def _compare(actual: Any, op: str, bound: str) -> bool:
    """``actual OP bound``: numerically when both are numbers, else strings lexically."""
    if isinstance(actual, bool):
        return False
    left: Any
    right: Any = number(bound)
    if isinstance(actual, int | float):
        left = actual
    elif isinstance(actual, str):
        left = number(actual) if right is not None else None
        if left is None:
            # ISO timestamps compare correctly as strings, so no date parsing here.
            left, right = actual, bound
    else:
        return False
    if right is None:
        return False
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


@functools.lru_cache(maxsize=256)
def _pattern(parts: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(p) for p in parts), re.IGNORECASE | re.DOTALL)


def quote(text: str) -> str:
    """``text`` as a quoted query literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _SPECIAL or ch.isspace() else ch for ch in text)


def _field_text(field: str) -> str:
    return _escape(field)


@dataclass(frozen=True, slots=True)
class Term:
    """``field:value`` (``field`` None: a full-text term); ``*`` splits ``parts``."""

    field: str | None
    parts: tuple[str, ...]

    @property
    def wildcard(self) -> bool:
        """Whether the value holds a ``*`` wildcard."""
        return len(self.parts) > 1

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` holds this value (see the module docstring)."""
        if self.field is None:
            if self.wildcard:
                pattern = _pattern(self.parts)
                return any(pattern.search(leaf) for leaf in _leaves(record))
            needle = self.parts[0].casefold()
            return any(needle in leaf for leaf in _leaves(record))
        if self.wildcard:
            pattern = _pattern(self.parts)
            return any(
                pattern.fullmatch(leaf) is not None
                for v in _values(record, self.field)
                if not isinstance(v, Mapping)
                for leaf in _leaves(v)
            )
        return any(_equals(v, self.parts[0]) for v in _values(record, self.field))

    def text(self) -> str:
        """The term as query text."""
        value = "*".join(_escape(p) for p in self.parts) if self.wildcard else quote(self.parts[0])
        return value if self.field is None else f"{_field_text(self.field)}:{value}"


@dataclass(frozen=True, slots=True)
class Exists:
    """``field:*``: the field is present and not ``None``."""

    field: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether ``record`` has a value for the field."""
        return any(True for _ in _values(record, self.field))

    def text(self) -> str:
        """The node as query text."""
        return f"{_field_text(self.field)}:*"


@dataclass(frozen=True, slots=True)
class Range:
    """``field:>value`` and its kin; ``op`` is one of ``>``, ``>=``, ``<``, ``<=``."""

    field: str
    op: str
    bound: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether some value of the field compares as asked."""
        return any(_compare(v, self.op, self.bound) for v in _values(record, self.field))

    def text(self) -> str:
        """The node as query text."""
        return f"{_field_text(self.field)}:{self.op}{quote(self.bound)}"


@dataclass(frozen=True, slots=True)
class Between:
    """``field:[low TO high]``, both ends included."""

    field: str
    low: str
    high: str

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether one value of the field lies within the bounds."""
        return any(
            _compare(v, ">=", self.low) and _compare(v, "<=", self.high)
            for v in _values(record, self.field)
        )

    def text(self) -> str:
        """The node as query text."""
        return f"{_field_text(self.field)}:[{quote(self.low)} TO {quote(self.high)}]"


@dataclass(frozen=True, slots=True)
class Not:
    """``NOT item``."""

    item: Node

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether the item does not match."""
        return not self.item.matches(record)

    def text(self) -> str:
        """The node as query text."""
        return f"NOT {_group(self.item)}"


@dataclass(frozen=True, slots=True)
class And:
    """All of ``items``."""

    items: tuple[Node, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether every item matches."""
        return all(item.matches(record) for item in self.items)

    def text(self) -> str:
        """The node as query text."""
        return " AND ".join(_group(item) for item in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``items``."""

    items: tuple[Node, ...]

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether at least one item matches."""
        return any(item.matches(record) for item in self.items)

    def text(self) -> str:
        """The node as query text."""
        return " OR ".join(_group(item) for item in self.items)


Node: TypeAlias = Term | Exists | Range | Between | Not | And | Or


def _group(node: Node) -> str:
    return f"({node.text()})" if isinstance(node, And | Or) else node.text()


def _walk_fields(node: Node, into: set[str]) -> None:
    if isinstance(node, And | Or):
        for item in node.items:
            _walk_fields(item, into)
    elif isinstance(node, Not):
        _walk_fields(node.item, into)
    elif node.field is not None:
        into.add(node.field)


class Query:
    """A parsed query; build one with :func:`cairn.collector.parse_query`.

    ``str(query)`` is a canonical text that parses back to an equivalent query.
    """

    __slots__ = ("_root",)

    def __init__(self, root: Node | None) -> None:
        self._root = root

    @property
    def root(self) -> Node | None:
        """The query tree (``None`` for the empty query, which matches everything)."""
        return self._root

    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether the log record or span attributes ``record`` satisfy the query."""
        return self._root is None or self._root.matches(record)

    def fields(self) -> frozenset[str]:
        """The field names the query refers to (full-text terms refer to none)."""
        found: set[str] = set()
        if self._root is not None:
            _walk_fields(self._root, found)
        return frozenset(found)

    def __str__(self) -> str:
        return "" if self._root is None else self._root.text()

    def __repr__(self) -> str:
        return f"Query({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Query) and self._root == other._root

    def __hash__(self) -> int:
        return hash(self._root)
