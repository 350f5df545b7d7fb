"""``cairn load``: open-loop traffic against a service of a running ``cairn up`` (or a URL)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click
import httpx

from cairn.platform._errors import NoRunError
from cairn.platform._load import (
    DEFAULT_MIX,
    LoadSummary,
    Progress,
    parse_duration,
    parse_mix,
    parse_rate,
    run_load,
)
from cairn.platform._state import InstanceRecord, RunState, find_run

__all__ = ["load_command", "read_run", "run_instances", "service_urls"]


def read_run(run_file: Path | None) -> RunState:
    """The run state of ``run_file``, else the one :func:`find_run` finds from the cwd."""
    if run_file is None:
        return find_run(None)
    try:
        return RunState.from_json(json.loads(run_file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise NoRunError(
            f"{run_file} does not exist: is `cairn up` running? start one with `cairn up`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NoRunError(f"{run_file} cannot be read ({exc})") from exc


def run_instances(state: RunState) -> list[InstanceRecord]:
    """The instances as the supervisor sees them now (``GET /status``), else as
    ``run.json`` last recorded them (ports change when instances restart)."""
    try:
        response = httpx.get(f"{state.control}/status", headers=state.headers, timeout=3.0)
        response.raise_for_status()
        return [InstanceRecord.from_json(item) for item in response.json()["instances"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return list(state.instances)


def service_urls(instances: Sequence[InstanceRecord], target: str) -> list[str]:
    """Base URLs of the running instances of service ``target`` (or of instance ``target``)."""
    chosen = [i for i in instances if target in (i.service, i.instance_id)]
    if not chosen:
        known = sorted({i.service for i in instances}) or ["none"]
        raise click.ClickException(
            f"no service or instance {target!r} in this run (services: {', '.join(known)})"
        )
    urls = [
        i.url
        for i in chosen
        if i.url and i.state == "running" and i.health in ("passing", "starting")
    ]
    if not urls:
        states = ", ".join(f"{i.instance_id}: {i.state}/{i.health}" for i in chosen)
        raise click.ClickException(
            f"no running instance of {target!r} ({states}); `cairn chaos start` one"
        )
    return urls


async def _registry_urls(registry: str, target: str) -> list[str]:
    from cairn.discovery import connect

    store = connect(registry)
    try:
        found = await store.instances(target)
    finally:
        await store.aclose()
    if not found:
        raise click.ClickException(f"no passing instance of {target!r} in registry {registry}")
    return [f"http://{instance.host_port}" for instance in found]


def _parse_ids(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        ids = (int(low), int(high)) if sep else (1, int(low))
    except ValueError:
        raise click.BadParameter(f"{text!r}: write FIRST-LAST, e.g. 1-100") from None
    if ids[0] > ids[1]:
        raise click.BadParameter(f"{text!r}: FIRST must not be above LAST")
    return ids


class _ProgressLine:
    """A bar redrawn in place on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, stream: IO[str], *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.last_plain = 0.0

    def __call__(self, progress: Progress) -> None:
        share = min(1.0, progress.elapsed / progress.duration) if progress.duration else 1.0
        text = (
            f"{progress.elapsed:5.1f}s/{progress.duration:g}s  sent {progress.sent}  "
            f"done {progress.done}  errors {progress.errors}  in flight {progress.in_flight}"
        )
        if self.tty:
            filled = int(share * 24)
            bar = "#" * filled + "." * (24 - filled)
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
            self.stream.flush()
        elif progress.elapsed - self.last_plain >= 5.0:
            self.last_plain = progress.elapsed
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def format_summary(summary: LoadSummary, target: str) -> str:
    """The human summary printed at the end."""
    latency = summary.latency_ms
    lines = [
        f"target    {target}: {', '.join(summary.targets)}",
        f"requests  {summary.requests} scheduled at {summary.rate:g}/s, "
        f"{summary.completed} completed in {summary.elapsed:.1f} s "
        f"({summary.throughput:.1f} req/s)",
        "statuses  " + (", ".join(f"{k}: {v}" for k, v in summary.statuses.items()) or "none"),
        f"errors    {summary.error_count}"
        + (
            " (" + ", ".join(f"{k}: {v}" for k, v in summary.errors.items()) + ")"
            if summary.errors
            else ""
        ),
        "latency   "
        + "  ".join(f"{name} {latency[name]:.1f} ms" for name in ("p50", "p90", "p99", "max")),
    ]
    if len(summary.endpoints) > 1:
        width = max(len(label) for label in summary.endpoints)
        lines.append("")
        lines.append(f"{'endpoint':<{width}}  requests  errors  p50 ms  p99 ms")
        for label, data in summary.endpoints.items():
            errors = sum(data["errors"].values())
            ms = data["latency_ms"]
            lines.append(
                f"{label:<{width}}  {data['requests']:>8}  {errors:>6}  "
                f"{ms['p50']:>6.1f}  {ms['p99']:>6.1f}"
            )
    return "\n".join(lines)


@click.command("load")
@click.option("--rate", default="20/s", show_default=True, help="Requests per second (or N/m).")
@click.option("--duration", default="30s", show_default=True, help="How long: 30s, 2m, 500ms.")
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Most requests in flight; later ones wait (their latency counts the wait).",
)
@click.option("--target", default="orders", show_default=True, help="Service (or instance id).")
@click.option(
    "--mix",
    default=DEFAULT_MIX,
    show_default=True,
    help="Weighted requests: 'METHOD /path [JSON body][:weight]', comma-separated; "
    "{id} and {int:A-B} are filled at random.",
)
@click.option("--ids", default="1-100", show_default=True, help="Range of {id}.")
@click.option("--timeout", "timeout_text", default="10s", show_default=True, help="Per request.")
@click.option("--seed", type=int, default=None, help="Seed the random choices (repeatable runs).")
@click.option(
    "--run-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The run state of `cairn up` (default: .cairn/run.json here or above).",
)
@click.option("--url", default=None, help="Send to this base URL instead (no `cairn up` needed).")
@click.option("--registry", default=None, help="Find --target in this registry instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--fail-on-error", is_flag=True, help="Exit 1 if any request failed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def load_command(
    rate: str,
    duration: str,
    concurrency: int,
    target: str,
    mix: str,
    ids: str,
    timeout_text: str,
    seed: int | None,
    run_file: Path | None,
    url: str | None,
    registry: str | None,
    as_json: bool,
    fail_on_error: bool,
    quiet: bool,
) -> None:
    """Send open-loop traffic at a fixed rate to a service; print throughput, errors and
    latency percentiles (counted from each request's scheduled time).

    Targets come from the running `cairn up` (its run file and control API),
    from --registry, or --url.
    """
    if sum(x is not None for x in (run_file, url, registry)) > 1:
        raise click.UsageError("give at most one of --run-file, --url and --registry")
    try:
        per_second = parse_rate(rate)
        seconds = parse_duration(duration)
        request_timeout = parse_duration(timeout_text)
        entries = parse_mix(mix)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    id_range = _parse_ids(ids)
    if url is not None:
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"--url {url!r} must start with http:// or https://")
        urls = [url]
    elif registry is not None:
        urls = asyncio.run(_registry_urls(registry, target))
    else:
        try:
            state = read_run(run_file)
        except NoRunError as exc:
            raise click.ClickException(f"{exc} (or pass --url)") from None
        urls = service_urls(run_instances(state), target)

    stream = sys.stderr
    show: _ProgressLine | None = None
    if not quiet:
        show = _ProgressLine(stream, tty=stream.isatty())
    try:
        summary = asyncio.run(
            run_load(
                urls,
                entries,
                rate=per_second,
                duration=seconds,
                concurrency=concurrency,
                ids=id_range,
                timeout=request_timeout,
                seed=seed,
                progress=show,
            )
        )
    finally:
        if show is not None:
            show.close()
    if as_json:
        data: dict[str, Any] = {"target": target, **summary.to_json()}
        click.echo(json.dumps(data, indent=1))
    else:
        click.echo(format_summary(summary, target))
    if fail_on_error and summary.error_count:
        sys.exit(1)
