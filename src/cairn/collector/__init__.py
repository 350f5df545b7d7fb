"""The collector: OTLP in, a local store, and one query language over logs and spans.

::

    from cairn.collector import parse_query

    query = parse_query('user_id:123 AND event:purchase_completed')
    hits = [record for record in records if query.matches(record)]

The language is described in ``docs/query-language.md``; a query that does not parse
raises :class:`QueryError` with the column of the problem.
"""

from __future__ import annotations

from cairn.collector._query_eval import Query
from cairn.collector._query_parse import QueryError, parse_query

__all__ = ["Query", "QueryError", "parse_query"]
