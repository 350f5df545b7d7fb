"""The query language: a table of queries over a known data set, and positioned errors."""

from __future__ import annotations

from typing import Any

import pytest

import cairn
from cairn.collector import Query, QueryError, parse_query

RECORDS: dict[str, dict[str, Any]] = {
    "r1": {
        "event": "purchase_completed",
        "user_id": 123,
        "level": "info",
        "duration_ms": 250,
        "message": "Order 42 paid by card",
        "timestamp": "2026-11-27T10:00:00Z",
        "http": {"route": "/orders/{order_id}", "status_code": 200},
    },
    "r2": {
        "event": "purchase_completed",
        "user_id": "456",
        "level": "INFO",
        "duration_ms": 80.5,
        "message": "Order 43 paid by voucher",
        "timestamp": "2026-11-27T10:05:00Z",
    },
    "r3": {
        "event": "purchase_failed",
        "user_id": 123,
        "level": "error",
        "duration_ms": 1200,
        "message": "Payment gateway timed out",
        "timestamp": "2026-11-27T11:00:00Z",
        "error": {"type": "TimeoutError"},
    },
    "r4": {
        "event": "cart_viewed",
        "user_id": "123",
        "level": "debug",
        "message": "cart has 3 items",
        "cached": True,
        "timestamp": "2026-11-26T23:59:59Z",
    },
    "r5": {
        "event": "login",
        "user_id": 789,
        "level": "warning",
        "message": "too many attempts",
        "cached": False,
        "tags": ["auth", "retry"],
        "timestamp": "2026-11-28T00:00:00Z",
    },
    "r6": {
        "http.route": "/inventory/items",
        "http": {"route": "/ignored/because/the/literal/key/wins"},
        "duration_ms": 100,
        "message": "GET /inventory/items",
        "level": "info",
    },
    "r7": {"message": "retry 2 of 3 for inventory.check", "attempt": "2", "level": "warning"},
    "r8": {"message": "circuit breaker opened", "breaker": None, "level": "error"},
    "r9": {"event": "and", "message": "the word AND as a value", "count": -5},
    "r10": {"message": "nested", "payload": {"items": [{"sku": "A-1"}, {"sku": "B-2"}]}},
}

TABLE: list[tuple[str, set[str]]] = [
    # field:value, type aware
    ("user_id:123", {"r1", "r3", "r4"}),
    ("user_id:456", {"r2"}),
    ("user_id:123.0", {"r1", "r3"}),
    ("event:purchase_completed", {"r1", "r2"}),
    ("event:PURCHASE_COMPLETED", {"r1", "r2"}),
    ("level:info", {"r1", "r2", "r6"}),
    ("cached:true", {"r4"}),
    ("cached:FALSE", {"r5"}),
    ("cached:1", set()),
    ("duration_ms:80.5", {"r2"}),
    ("attempt:2", {"r7"}),
    ("count:-5", {"r9"}),
    ("tags:retry", {"r5"}),
    ("event:purchase", set()),
    # quoted phrases
    ('message:"cart has 3 items"', {"r4"}),
    ('message:"cart has"', set()),
    ('"paid by"', {"r1", "r2"}),
    ('"PAID BY card"', {"r1"}),
    ('user_id:"123"', {"r1", "r3", "r4"}),
    ('"*"', set()),
    # bare terms: case-insensitive substrings of any value, nested included
    ("payment", {"r3"}),
    ("timeouterror", {"r3"}),
    ("b-2", {"r10"}),
    ("123", {"r1", "r3", "r4"}),
    ("true", {"r4"}),
    # adjacent terms are ANDed
    ("order paid", {"r1", "r2"}),
    ("order voucher", {"r2"}),
    # boolean operators, precedence NOT > AND > OR, case-insensitive keywords
    ("user_id:123 AND event:purchase_completed", {"r1"}),
    ("user_id:123 and event:purchase_completed", {"r1"}),
    ("event:login OR level:debug", {"r4", "r5"}),
    ("level:error OR level:warning AND attempt:*", {"r3", "r8", "r7"}),
    ("(level:error OR level:warning) AND attempt:*", {"r7"}),
    ("NOT level:info AND user_id:123", {"r3", "r4"}),
    ("NOT (level:info OR level:error)", {"r4", "r5", "r7", "r9", "r10"}),
    ("not not event:login", {"r5"}),
    ("user_id:123 NOT level:error", {"r1", "r4"}),
    ("event:and", {"r9"}),
    # right after the colon a keyword is a value
    ("event: AND message:*", {"r9"}),
    ('"and"', {"r9"}),
    # field value groups
    ("level:(error OR debug)", {"r3", "r4", "r8"}),
    ("level:(info AND NOT INFO)", set()),
    ("duration_ms:(>1000 OR <90)", {"r2", "r3"}),
    ("duration_ms:(>90 <=250)", {"r1", "r6"}),
    ("user_id:(123 (NOT 456))", {"r1", "r3", "r4"}),
    # wildcards
    ("event:purchase_*", {"r1", "r2", "r3"}),
    ("event:*_completed", {"r1", "r2"}),
    ("user_id:4*", {"r2"}),
    ("pay*fail", set()),
    ("gate*time", {"r3"}),
    ("invent*", {"r6", "r7"}),
    (r"message:GET\ \/inventory*", {"r6"}),
    ("payload:*", {"r10"}),
    ("payload.items.sku:B*", {"r10"}),
    ("http:*", {"r1", "r6"}),
    # ranges
    ("duration_ms:>100", {"r1", "r3"}),
    ("duration_ms:>=100", {"r1", "r3", "r6"}),
    ("duration_ms:<100", {"r2"}),
    ("duration_ms:<=100", {"r2", "r6"}),
    ("duration_ms:[100 TO 250]", {"r1", "r6"}),
    ("duration_ms:[80.5 to 100]", {"r2", "r6"}),
    ("user_id:>200", {"r2", "r5"}),
    ("attempt:>=2", {"r7"}),
    ("event:>=purchase", {"r1", "r2", "r3"}),
    ("event:[cart TO login]", {"r4", "r5"}),
    ('timestamp:>="2026-11-27"', {"r1", "r2", "r3", "r5"}),
    ('timestamp:["2026-11-27T10:00:00Z" TO "2026-11-27T10:59:59Z"]', {"r1", "r2"}),
    ("cached:>0", set()),
    ("duration_ms:>abc", set()),
    ("payload:>1", set()),
    # existence; None counts as absent
    ("error:*", {"r3"}),
    ("breaker:*", set()),
    ("cached:*", {"r4", "r5"}),
    ("NOT user_id:*", {"r6", "r7", "r8", "r9", "r10"}),
    # dotted fields: a literal key first, then a path
    ('http.route:"/orders/{order_id}"', {"r1"}),
    ("http.route:/inventory/items", {"r6"}),
    ("http.status_code:200", {"r1"}),
    ("error.type:TimeoutError", {"r3"}),
    ("error.type.name:x", set()),
    ("payload.items:*", {"r10"}),
    ("payload:nested", set()),
    # the empty query matches everything
    ("", set(RECORDS)),
    ("   ", set(RECORDS)),
]


def _hits(query: Query) -> set[str]:
    return {name for name, record in RECORDS.items() if query.matches(record)}


@pytest.mark.parametrize(("text", "expected"), TABLE, ids=[t for t, _ in TABLE])
def test_query_table(text: str, expected: set[str]) -> None:
    query = parse_query(text)
    assert _hits(query) == expected
    # The canonical text means the same thing.
    again = parse_query(str(query))
    assert again == query
    assert _hits(again) == expected


def test_the_seeds_query() -> None:
    query = parse_query("user_id:123 AND event:purchase_completed")
    assert _hits(query) == {"r1"}
    assert query.fields() == {"user_id", "event"}
    assert repr(query) == 'Query(\'user_id:"123" AND event:"purchase_completed"\')'


def test_fields_lists_every_referenced_field_but_not_full_text() -> None:
    query = parse_query("a:1 OR NOT (b:>2 c.d:[1 TO 2]) e:* free text f:(x OR y)")
    assert query.fields() == frozenset({"a", "b", "c.d", "e", "f"})
    assert parse_query("just words").fields() == frozenset()
    assert parse_query("").fields() == frozenset()
    assert parse_query("").root is None


def test_queries_compare_and_hash_by_meaning_of_their_tree() -> None:
    assert parse_query("a:1 b:2") == parse_query("a:1 AND b:2")
    assert hash(parse_query("a:1 b:2")) == hash(parse_query("a:1 AND b:2"))
    assert parse_query("a:1") != parse_query("a:2")
    assert parse_query("a:1") != "a:1"


def test_escapes_in_words_and_quotes() -> None:
    assert _hits(parse_query(r'message:"the word AND as a \"value\""')) == set()
    record = {"path": 'C:\\x "y"', "star": "a*b", "sp ace": "v"}
    assert parse_query(r'path:"C:\\x \"y\""').matches(record)
    assert parse_query(r"star:a\*b").matches(record)
    assert not parse_query(r"star:a\*").matches(record)
    assert parse_query(r"star:a*").matches(record)
    assert parse_query(r"sp\ ace:v").matches(record)
    query = parse_query(r"sp\ ace:v* OR star:a\**")
    assert parse_query(str(query)) == query


ERRORS: list[tuple[str, int, str]] = [
    ("user_id:", 9, 'expected a value after "user_id:"'),
    ("user_id: )", 10, 'expected a value after "user_id:"'),
    ("a AND", 6, 'expected a term after "AND"'),
    ("NOT", 4, 'expected a term after "NOT"'),
    ("a OR OR b", 6, 'unexpected "OR"'),
    ("AND a", 1, 'unexpected "AND"'),
    ("(a OR b", 8, "expected ')' to close the '(' of column 1"),
    ("a)", 2, 'unexpected ")"'),
    ("()", 2, 'unexpected ")"'),
    ('x:"abc', 3, "unterminated quoted string"),
    ("abc\\", 4, "nothing to escape after '\\'"),
    ("x:[1 TO", 8, 'expected a value after "TO"'),
    ("x:[1 2]", 6, "expected 'TO' in the range"),
    ("x:[1 TO 2", 10, "expected ']' to close the range"),
    ("x:[", 4, 'expected a value after "["'),
    ("x:>", 4, 'expected a value after ">"'),
    ("x:<=(", 5, 'expected a value after "<="'),
    ("x:>1*", 4, "wildcards are not allowed in ranges"),
    ("x:(a OR)", 8, "expected a value"),
    ("x:(and)", 4, "expected a value"),
    ("a*:1", 1, '"a*" cannot be a field name'),
    ("or:1", 1, '"or" cannot be a field name'),
    ("a:b:c", 4, 'unexpected ":"'),
    (":a", 1, 'unexpected ":"'),
    ("a >5", 3, 'unexpected ">"'),
    ("a [1 TO 2]", 3, 'unexpected "["'),
    ("(" * 70 + "a" + ")" * 70, 66, "the query nests deeper than 64 levels"),
    ("NOT " * 70 + "a", 261, "the query nests deeper than 64 levels"),
]


@pytest.mark.parametrize(("text", "column", "reason"), ERRORS, ids=[e[0][:30] for e in ERRORS])
def test_parse_errors_point_at_the_column(text: str, column: int, reason: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    error = caught.value
    assert (error.column, error.reason, error.query) == (column, reason, text)
    assert error.message == f"{reason} at column {column}"
    assert 1 <= error.column <= len(text) + 1


def test_error_text_draws_a_caret_under_the_column() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("user_id:\t")
    error = caught.value
    assert isinstance(error, cairn.CairnError)
    assert isinstance(error, ValueError)
    lines = str(error).split("\n")
    assert lines[0] == 'expected a value after "user_id:" at column 10'
    # Tabs are shown as spaces so the caret lines up.
    assert lines[1] == "  user_id: "
    assert lines[2] == "  " + " " * 9 + "^"
