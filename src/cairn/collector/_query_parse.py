"""Text to query tree: a lexer and a recursive-descent parser with positioned errors.

Grammar (keywords case-insensitive; adjacent terms are ANDed)::

    query    := [or]
    or       := and ("OR" and)*
    and      := not (["AND"] not)*
    not      := "NOT" not | primary
    primary  := "(" or ")" | WORD ":" rhs | WORD | QUOTED        (outside a field group)
              | rhs                                             (inside field:( ... ))
    rhs      := "*" | ("<" | "<=" | ">" | ">=") value | "[" value "TO" value "]"
              | "(" or ")" | value
    value    := WORD | QUOTED
"""

from __future__ import annotations

from dataclasses import dataclass

from cairn._errors import CairnError
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
)

__all__ = ["QueryError", "parse_query"]

# Deeper nesting than this is surely not typed by a person, and recursion must stay bounded.
MAX_DEPTH = 64
_PUNCT = frozenset("()[]:")
_STOP = frozenset('()[]:<>"')


def _q(text: str) -> str:
    return f'"{text}"'


class QueryError(CairnError, ValueError):
    """A query that does not parse; ``column`` (1-based) says where.

    ``str()`` gives the message, the query and a caret under the column.
    """

    def __init__(self, reason: str, *, query: str, column: int) -> None:
        super().__init__(reason, query, column)
        self.reason = reason
        self.query = query
        self.column = column

    @property
    def message(self) -> str:
        """The reason with its column, on one line."""
        return f"{self.reason} at column {self.column}"

    def __str__(self) -> str:
        shown = "".join(" " if ch.isspace() else ch for ch in self.query)
        return f"{self.message}\n  {shown}\n  {' ' * (self.column - 1)}^"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "quoted", "eof", or the punctuation itself
    text: str  # the raw source text
    parts: tuple[str, ...]  # words: literal runs between unescaped "*"; quoted: the value
    column: int


def _lex(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCT:
            tokens.append(_Token(ch, ch, (), i + 1))
            i += 1
        elif ch in "<>":
            op = query[i : i + 2] if query[i + 1 : i + 2] == "=" else ch
            tokens.append(_Token(op, op, (), i + 1))
            i += len(op)
        elif ch == '"':
            start, i, chars = i, i + 1, []
            while i < n and query[i] != '"':
                if query[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(query[i])
                i += 1
            if i >= n:
                raise QueryError("unterminated quoted string", query=query, column=start + 1)
            i += 1
            tokens.append(_Token("quoted", query[start:i], ("".join(chars),), start + 1))
        else:
            start, parts, chars = i, [], []
            while i < n and not query[i].isspace() and query[i] not in _STOP:
                if query[i] == "\\":
                    if i + 1 >= n:
                        raise QueryError("nothing to escape after '\\'", query=query, column=i + 1)
                    i += 1
                    chars.append(query[i])
                elif query[i] == "*":
                    parts.append("".join(chars))
                    chars = []
                else:
                    chars.append(query[i])
                i += 1
            parts.append("".join(chars))
            tokens.append(_Token("word", query[start:i], tuple(parts), start + 1))
    tokens.append(_Token("eof", "", (), n + 1))
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _lex(query)
        self.pos = 0
        self.depth = 0

    def fail(self, reason: str, token: _Token | None = None) -> QueryError:
        where = token if token is not None else self.peek()
        return QueryError(reason, query=self.query, column=where.column)

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.casefold() == word and len(token.parts) == 1

    def parse(self) -> Node | None:
        if self.peek().kind == "eof":
            return None
        node = self.or_(None)
        token = self.peek()
        if token.kind != "eof":
            raise self.fail(f"unexpected {_q(token.text)}", token)
        return node

    def or_(self, field: str | None) -> Node:
        items = [self.and_(field)]
        while self.keyword("or"):
            self.take()
            items.append(self.and_(field))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_(self, field: str | None) -> Node:
        items = [self.not_(field)]
        while True:
            if self.keyword("and"):
                self.take()
            elif not self.starts_term(field):
                break
            items.append(self.not_(field))
        return items[0] if len(items) == 1 else And(tuple(items))

    def starts_term(self, field: str | None) -> bool:
        token = self.peek()
        if token.kind == "word":
            return not (self.keyword("and") or self.keyword("or"))
        if field is not None and token.kind in {"<", "<=", ">", ">=", "["}:
            return True
        return token.kind in {"quoted", "("}

    def not_(self, field: str | None) -> Node:
        if self.keyword("not"):
            self.take()
            self.enter()
            node = Not(self.not_(field))
            self.depth -= 1
            return node
        return self.primary(field)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the query nests deeper than {MAX_DEPTH} levels")

    def group(self, field: str | None) -> Node:
        opening = self.take()
        self.enter()
        node = self.or_(field)
        if self.peek().kind != ")":
            raise self.fail(f"expected ')' to close the '(' of column {opening.column}")
        self.take()
        self.depth -= 1
        return node

    def primary(self, field: str | None) -> Node:
        token = self.peek()
        if field is not None:
            return self.rhs(field, in_group=True)
        if token.kind == "(":
            return self.group(None)
        if token.kind == "word" and self.tokens[self.pos + 1].kind == ":":
            self.take()
            self.take()
            if token.text.casefold() in {"and", "or", "not"} or len(token.parts) > 1:
                raise self.fail(f"{_q(token.text)} cannot be a field name", token)
            return self.rhs(token.parts[0], in_group=False)
        if token.kind in {"word", "quoted"} and not self.keyword("and") and not self.keyword("or"):
            self.take()
            return Term(None, token.parts)
        if token.kind == "eof":
            before = self.tokens[self.pos - 1].text if self.pos else ""
            raise self.fail(f"expected a term after {_q(before)}")
        raise self.fail(f"unexpected {_q(token.text)}", token)

    def rhs(self, field: str, *, in_group: bool) -> Node:
        token = self.peek()
        if token.kind == "word" and token.parts == ("", ""):
            self.take()
            return Exists(field)
        if token.kind in {">", ">=", "<", "<="}:
            self.take()
            return Range(field, token.kind, self.bound(f"after {_q(token.text)}"))
        if token.kind == "[":
            self.take()
            low = self.bound('after "["')
            if not self.keyword("to"):
                raise self.fail("expected 'TO' in the range")
            self.take()
            high = self.bound('after "TO"')
            if self.peek().kind != "]":
                raise self.fail("expected ']' to close the range")
            self.take()
            return Between(field, low, high)
        if token.kind == "(":
            return self.group(field)
        # (NOT was taken by the caller, so only AND/OR can stand where a value should.)
        keyword = in_group and (self.keyword("and") or self.keyword("or"))
        if token.kind in {"word", "quoted"} and not keyword:
            self.take()
            return Term(field, token.parts)
        where = "" if in_group else f' after "{field}:"'
        raise self.fail(f"expected a value{where}", token if token.kind != "eof" else None)

    def bound(self, where: str) -> str:
        token = self.peek()
        if token.kind not in {"word", "quoted"}:
            raise self.fail(f"expected a value {where}")
        if len(token.parts) > 1:
            raise self.fail("wildcards are not allowed in ranges", token)
        self.take()
        return token.parts[0]


def parse_query(text: str) -> Query:
    """Parse ``text`` in cairn's KQL-style language (see ``docs/query-language.md``).

    Raises :class:`QueryError`, with the 1-based ``column`` of the problem, when it does not
    parse. The empty query matches every record.
    """
    return Query(_Parser(text).parse())
