"""Hypothesis on the query language: the parser never crashes, and printing round-trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_query import RECORDS

from cairn.collector import Query, QueryError, parse_query
from cairn.collector._query_eval import And, Between, Exists, Node, Not, Or, Range, Term

# Mostly the characters the grammar cares about, so random text reaches deep into the parser.
_ALPHABET = st.sampled_from(list('()[]:<>="\\* \t\nabcANDORNOTto01.-_é'))
_WORDS = st.sampled_from(["AND", "OR", "NOT", "TO", "and", "user_id", "level", "123", ":", "*"])
_TEXT = st.one_of(
    st.text(_ALPHABET, max_size=40),
    st.lists(st.one_of(_WORDS, st.text(_ALPHABET, max_size=3)), max_size=12).map(" ".join),
    st.text(max_size=30),
)


@settings(max_examples=600, deadline=None)
@given(_TEXT)
def test_random_text_parses_or_raises_a_positioned_error(text: str) -> None:
    outcome: Query | QueryError
    try:
        outcome = parse_query(text)
    except QueryError as error:
        outcome = error
    if isinstance(outcome, QueryError):
        assert 1 <= outcome.column <= len(text) + 1
        assert outcome.query == text
        assert f"at column {outcome.column}" in str(outcome)
        return
    query = outcome
    # Whatever parsed can be evaluated and printed back to the same tree.
    for record in RECORDS.values():
        query.matches(record)
    assert parse_query(str(query)) == query


_FIELDS = st.sampled_from(
    [
        "user_id",
        "event",
        "level",
        "duration_ms",
        "timestamp",
        "cached",
        "http.route",
        "http.status_code",
        "error.type",
        "payload.items.sku",
        "tags",
        "sp ace",
        "a*b",
        "x:y",
        "to",
        "(p)",
    ]
)
_VALUES = st.one_of(
    st.sampled_from(
        [
            "123",
            "456",
            "info",
            "error",
            "purchase_completed",
            "true",
            "false",
            "100",
            "80.5",
            "2026-11-27",
            "AND",
            "or",
            "paid by",
            '"q"',
            "a\\b",
            "",
            "B-2",
            "/orders/{order_id}",
        ]
    ),
    st.text(max_size=6),
)
_PARTS = st.one_of(
    _VALUES.map(lambda v: (v,)),
    st.lists(
        st.sampled_from(["", "pur", "ed", "in", "2", "a b", "(", "\\"]), min_size=2, max_size=3
    )
    .map(tuple)
    .filter(lambda parts: any(parts)),
)

_LEAVES: st.SearchStrategy[Node] = st.one_of(
    st.builds(Term, st.none() | _FIELDS, _PARTS),
    st.builds(Exists, _FIELDS),
    st.builds(Range, _FIELDS, st.sampled_from([">", ">=", "<", "<="]), _VALUES),
    st.builds(Between, _FIELDS, _VALUES, _VALUES),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    items = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(st.builds(Not, children), st.builds(And, items), st.builds(Or, items))


_TREES = st.recursive(_LEAVES, _extend, max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_TREES)
def test_printed_trees_parse_back_to_an_equivalent_query(tree: Node) -> None:
    query = Query(tree)
    again = parse_query(str(query))
    assert again == query
    for record in RECORDS.values():
        assert again.matches(record) == query.matches(record)
