"""``cairn logs``, ``cairn traces``, ``cairn trace``, ``cairn metrics``: ask the collector.

The commands reach the collector at ``--collector URL``, else ``$CAIRN_COLLECTOR``,
else ``http://127.0.0.1:4318``. ``--json`` prints the API's JSON document unchanged,
for scripts. Exit status: 0 answered (also when nothing matched), 1 the trace or
metric asked for does not exist, 2 bad options or a query that does not parse,
3 no collector answered (or it failed).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click

from cairn.collector._client import (
    CollectorClient,
    CollectorRefused,
    CollectorUnavailable,
    metric_info_from_json,
    series_summary_from_json,
    trace_from_json,
    trace_summary_from_json,
)
from cairn.collector._query_parse import QueryError, parse_query
from cairn.collector._records import LogRecord, iso
from cairn.collector._render import (
    Style,
    parse_duration,
    render_logs,
    render_metric_names,
    render_metric_series,
    render_trace,
    render_traces,
)

__all__ = ["logs_command", "metrics_command", "trace_command", "traces_command"]

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

F = TypeVar("F", bound=Callable[..., Any])
_SERVER_DURATION = re.compile(r"\d+[smhd]")
_HEX = re.compile(r"[0-9a-f]+")


def _time_spec(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A duration back from now (``15m``, ``1.5h``) or an ISO time, in a form the
    collector accepts: ``<int><s|m|h|d>`` as is, anything else as an absolute UTC time."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _SERVER_DURATION.fullmatch(text):
        return text
    try:
        return iso(time.time_ns() - parse_duration(text))
    except ValueError:
        pass
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (15m, 2h, 7d) nor an ISO time (2026-11-27T14:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without a zone is the local time
    return iso(round(moment.timestamp() * 1e9))


def _query_text(ctx: click.Context, param: click.Parameter, value: Any) -> str | None:
    """The query (words given separately are joined), checked before anything is sent."""
    text = " ".join(value) if isinstance(value, tuple) else value
    if text is None or not text.strip():
        return None
    try:
        parse_query(text)
    except QueryError as exc:
        _fail(f"invalid query: {exc}", EXIT_USAGE)
    return str(text)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    click.get_current_context().exit(code)
    raise AssertionError("unreachable")  # pragma: no cover - ctx.exit raises


def _common(f: F) -> F:
    f = click.option(
        "--json", "as_json", is_flag=True, help="Print the collector's JSON answer as is."
    )(f)
    return click.option(
        "--collector",
        "collector",
        default=None,
        metavar="URL",
        help="The collector's address [default: $CAIRN_COLLECTOR or http://127.0.0.1:4318].",
    )(f)


@contextmanager
def _client(url: str | None) -> Iterator[CollectorClient]:
    """A client whose failures become messages and exit codes."""
    try:
        client = CollectorClient(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--collector") from None
    try:
        with client:
            yield client
    except CollectorUnavailable as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except QueryError as exc:
        _fail(f"the collector refused the query: {exc}", EXIT_USAGE)
    except CollectorRefused as exc:
        _fail(str(exc), EXIT_USAGE if exc.status == 400 else EXIT_UNREACHABLE)


def _print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


def _style(ascii: bool = False) -> Style:
    return Style.for_terminal(ascii=ascii)


@click.command(name="logs")
@click.argument("query", nargs=-1, callback=_query_text)
@click.option(
    "--since", default="15m", show_default=True, callback=_time_spec, help="15m, 2h, 7d or ISO."
)
@click.option("--until", default=None, callback=_time_spec, help="Same forms as --since.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@_common
def logs_command(
    query: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    collector: str | None,
) -> None:
    """Search log records: QUERY in the KQL-style language (docs/query-language.md).

    \b
      cairn logs 'user_id:123 AND event:purchase_completed'
      cairn logs level:error --since 2h
      cairn logs                       # everything from the last 15 minutes

    Prints the newest LIMIT matches, oldest first. Exit status: 0 (also with no
    matches), 2 for a query that does not parse, 3 when no collector answers.
    """
    with _client(collector) as client:
        data = client.logs_json(query, since=since, until=until, limit=limit)
    if as_json:
        _print_json(data)
        return
    records = [LogRecord.from_json(r) for r in data.get("records") or ()]
    if not records:
        click.echo("no matches", err=True)
        return
    click.echo(render_logs(records[::-1], style=_style()))
    if len(records) >= limit:
        click.echo(f"(the newest {limit}; raise --limit or narrow --since to see more)", err=True)


def _min_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value) / 1e6
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(name="traces")
@click.option("--service", default=None, help="Only traces with a span of this service.")
@click.option("--operation", default=None, help="Only traces with a span of this name.")
@click.option(
    "--min-duration",
    default=None,
    callback=_min_duration,
    help="Only traces with a span at least this long (250us, 100ms, 1.5s).",
)
@click.option("--status", type=click.Choice(["error", "ok", "unset"]), default=None)
@click.option(
    "--query",
    "-q",
    default=None,
    callback=_query_text,
    help="Only traces with a span matching this query (e.g. 'http.route:/orders*').",
)
@click.option(
    "--since", default="1h", show_default=True, callback=_time_spec, help="15m, 2h, 7d or ISO."
)
@click.option("--until", default=None, callback=_time_spec, help="Same forms as --since.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@_common
def traces_command(
    service: str | None,
    operation: str | None,
    min_duration: float | None,
    status: str | None,
    query: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    collector: str | None,
) -> None:
    """List traces, newest first: id, start, duration, root span, spans, errors, services.

    \b
      cairn traces --service orders --min-duration 100ms
      cairn traces --status error --since 6h
    """
    with _client(collector) as client:
        data = client.traces_json(
            service=service,
            operation=operation,
            min_duration_ms=min_duration,
            status=status,
            query=query,
            since=since,
            until=until,
            limit=limit,
        )
    if as_json:
        _print_json(data)
        return
    traces = [trace_summary_from_json(t) for t in data.get("traces") or ()]
    if not traces:
        click.echo("no matches", err=True)
        return
    click.echo(render_traces(traces, style=_style()))


def _find_prefix(client: CollectorClient, prefix: str) -> str:
    """The one trace whose id starts with ``prefix``, searched over the last week."""
    found = client.traces(query=f"trace_id:{prefix}*", since="7d", limit=3)
    ids = sorted({t.trace_id for t in found})
    if not ids:
        _fail(f"no trace with an id starting {prefix!r} in the last 7 days", EXIT_NOT_FOUND)
    if len(ids) > 1:
        _fail(
            f"{prefix!r} is the start of several trace ids ({', '.join(ids)}, ...): "
            "give more digits",
            EXIT_USAGE,
        )
    return ids[0]


@click.command(name="trace")
@click.argument("trace_id")
@click.option("--ascii", "ascii", is_flag=True, help="Draw the tree without box characters.")
@_common
def trace_command(trace_id: str, ascii: bool, as_json: bool, collector: str | None) -> None:
    """Print one trace as a tree of spans with durations, events and errors, then its logs.

    TRACE_ID is the 32 hex digits (a unique prefix of 6 or more also works).

    \b
      GET /orders/123 (152ms)  orders
        ├─ db.query (50ms)  orders
        └─ inventory.check (100ms)  orders
           └─ GET /inventory/items (80ms)  inventory

    Exit status: 0 shown, 1 no such trace, 2 a malformed id, 3 no collector.
    """
    wanted = trace_id.strip().lower()
    if not _HEX.fullmatch(wanted) or len(wanted) > 32 or len(wanted) < 6:
        raise click.BadParameter(
            f"{trace_id!r} is not a trace id: give its 32 hex digits (or a unique prefix of "
            "6 or more)",
            param_hint="TRACE_ID",
        )
    with _client(collector) as client:
        if len(wanted) < 32:
            wanted = _find_prefix(client, wanted)
        data = client.trace_json(wanted)
    if data is None or (not data.get("spans") and not data.get("logs")):
        _fail(f"the collector has no trace {wanted}", EXIT_NOT_FOUND)
    if as_json:
        _print_json(data)
        return
    detail = trace_from_json(data)
    click.echo(render_trace(detail.trace_id, detail.spans, detail.logs, style=_style(ascii)))


def _labels(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    names = [n.strip() for item in value for n in item.split(",") if n.strip()]
    return tuple(dict.fromkeys(names))


@click.command(name="metrics")
@click.argument("name", required=False)
@click.option(
    "--by",
    multiple=True,
    callback=_labels,
    metavar="LABEL",
    help="Group (sum) series by this label; repeat or give a comma list.",
)
@click.option(
    "--since",
    default="5m",
    show_default=True,
    callback=_time_spec,
    help="Window for rates and quantiles.",
)
@_common
def metrics_command(
    name: str | None,
    by: tuple[str, ...],
    since: str | None,
    as_json: bool,
    collector: str | None,
) -> None:
    """List metrics, or summarise one: latest (gauge), rate/s (counter), p50/p90/p99 and
    rate/s (histogram), per series.

    \b
      cairn metrics                                   # names, kinds, series counts
      cairn metrics http_server_request_duration_seconds --by service,route
    """
    if name is None:
        if by:
            raise click.UsageError("--by needs a metric NAME")
        with _client(collector) as client:
            data = client.metrics_json()
        if as_json:
            _print_json(data)
            return
        families = [metric_info_from_json(m) for m in data.get("metrics") or ()]
        if not families:
            click.echo("no metrics yet", err=True)
            return
        click.echo(render_metric_names(families, style=_style()))
        return
    with _client(collector) as client:
        found = client.metric_json(name, by=by, since=since)
    if found is None:
        _fail(f"the collector has no metric {name!r}; `cairn metrics` lists them", EXIT_NOT_FOUND)
    if as_json:
        _print_json(found)
        return
    series = [series_summary_from_json(s) for s in found.get("series") or ()]
    if not series:
        click.echo(f"no samples of {name} in the window (--since)", err=True)
        return
    kind = str(found.get("kind") or "unknown")
    click.echo(render_metric_series(str(found.get("name") or name), kind, series, style=_style()))
