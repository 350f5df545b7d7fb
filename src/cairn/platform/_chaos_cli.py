"""``cairn chaos``: kill and start instances, slow them down, make them fail, restore.

``kill``/``start`` go through the supervisor's control API; ``latency``,
``errors``, ``restore`` and ``status`` call each instance's
``/_cairn/chaos`` endpoint (see :mod:`cairn.service._chaos`). Both need the
run's token, which ``cairn up`` keeps in ``.cairn/run.json`` (mode 0600).
A TARGET is a service name (all its instances) or an instance id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from cairn.platform._errors import NoRunError
from cairn.platform._load_cli import read_run, run_instances
from cairn.platform._state import InstanceRecord, RunState

__all__ = ["chaos_command"]

_TIMEOUT = 5.0
_CHAOS = "/_cairn/chaos"


@dataclass
class _Run:
    state: RunState
    instances: list[InstanceRecord]


def _run(ctx: click.Context) -> _Run:
    run_file: Path | None = ctx.obj
    try:
        state = read_run(run_file)
    except NoRunError as exc:
        raise click.ClickException(str(exc)) from None
    return _Run(state, run_instances(state))


def _select(run: _Run, target: str | None) -> list[InstanceRecord]:
    if target is None:
        return list(run.instances)
    exact = [i for i in run.instances if i.instance_id == target]
    chosen = exact or [i for i in run.instances if i.service == target]
    if not chosen:
        services = sorted({i.service for i in run.instances})
        ids = [i.instance_id for i in run.instances]
        raise click.ClickException(
            f"no service or instance {target!r} in this run "
            f"(services: {', '.join(services) or 'none'}; instances: {', '.join(ids) or 'none'})"
        )
    return chosen


def _describe(fault: dict[str, Any]) -> str:
    parts = []
    if fault.get("latency_ms"):
        parts.append(f"+{fault['latency_ms']:g} ms")
    if fault.get("error_rate"):
        parts.append(f"{fault['error_rate']:.0%} errors ({fault.get('status', 503)})")
    return ", ".join(parts) or "no fault"


def _chaos_call(
    http: httpx.Client, instance: InstanceRecord, method: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    assert instance.url is not None
    response = http.request(method, instance.url.rstrip("/") + _CHAOS, json=body)
    if response.status_code == 401:
        raise click.ClickException(
            f"{instance.instance_id} refused the run's token: was it started by this `cairn up`?"
        )
    if response.status_code == 404:
        raise click.ClickException(
            f"{instance.instance_id} has no {_CHAOS} endpoint: it runs without CAIRN_CHAOS_TOKEN "
            "(instances started by `cairn up` have it)"
        )
    if response.status_code >= 400:
        detail = response.json().get("error", response.text) if response.content else ""
        raise click.ClickException(f"{instance.instance_id}: {response.status_code} {detail}")
    result: dict[str, Any] = response.json()
    return result


def _apply(
    ctx: click.Context, target: str | None, change: dict[str, Any] | None, *, merge: bool
) -> None:
    """POST ``change`` (merged into the current fault when ``merge``) or DELETE (None)."""
    run = _run(ctx)
    instances = _select(run, target)
    failed = 0
    with httpx.Client(headers=run.state.headers, timeout=_TIMEOUT) as http:
        for instance in instances:
            if not instance.url or instance.state != "running":
                click.echo(f"{instance.instance_id:<20} skipped: {instance.state}")
                continue
            try:
                if change is None:
                    fault = _chaos_call(http, instance, "DELETE")
                else:
                    body = dict(change)
                    if merge:
                        current = _chaos_call(http, instance, "GET")
                        body = {**current, **change}
                    fault = _chaos_call(http, instance, "POST", body)
            except httpx.HTTPError as exc:
                failed += 1
                click.echo(f"{instance.instance_id:<20} unreachable: {exc}", err=True)
                continue
            click.echo(f"{instance.instance_id:<20} {_describe(fault)}")
    if failed:
        raise click.ClickException(f"{failed} instance(s) could not be reached")


@click.group("chaos")
@click.option(
    "--run-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="The run state of `cairn up` (default: .cairn/run.json here or above).",
)
@click.pass_context
def chaos_command(ctx: click.Context, run_file: Path | None) -> None:
    """Kill, start, slow down or fail instances of a running `cairn up`.

    TARGET is a service (all its instances) or an instance id (inventory-1).
    """
    ctx.obj = run_file


def _control(ctx: click.Context, instance_id: str, action: str) -> None:
    run = _run(ctx)
    if not any(i.instance_id == instance_id for i in run.instances):
        same = [i.instance_id for i in run.instances if i.service == instance_id]
        hint = f"; {instance_id} is a service: name one of {', '.join(same)}" if same else ""
        raise click.ClickException(f"no instance {instance_id!r} in this run{hint}")
    url = f"{run.state.control}/instances/{instance_id}/{action}"
    try:
        response = httpx.post(url, headers=run.state.headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"the supervisor's control API at {run.state.control} cannot be reached: {exc}"
        ) from None
    if response.status_code >= 400:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise click.ClickException(f"{action} {instance_id}: {response.status_code} {detail}")
    record = response.json().get("instance", {})
    click.echo(f"{instance_id:<20} {record.get('state', action)}")


@chaos_command.command("kill")
@click.argument("instance")
@click.pass_context
def kill_command(ctx: click.Context, instance: str) -> None:
    """SIGKILL INSTANCE and keep it down until `cairn chaos start`."""
    _control(ctx, instance, "kill")


@chaos_command.command("start")
@click.argument("instance")
@click.pass_context
def start_command(ctx: click.Context, instance: str) -> None:
    """Start a killed INSTANCE again (same id, new port)."""
    _control(ctx, instance, "start")


@chaos_command.command("latency")
@click.argument("target")
@click.option("--ms", type=click.FloatRange(0, 600_000), required=True, help="Added delay.")
@click.pass_context
def latency_command(ctx: click.Context, target: str, ms: float) -> None:
    """Delay every request to TARGET by --ms milliseconds (0 removes it)."""
    _apply(ctx, target, {"latency_ms": ms}, merge=True)


@chaos_command.command("errors")
@click.argument("target")
@click.option(
    "--rate", type=click.FloatRange(0, 1), required=True, help="Share failed, 0 to 1 (0 stops)."
)
@click.option("--status", type=click.IntRange(400, 599), default=503, show_default=True)
@click.option("--seed", type=int, default=None, help="Fail the same requests each time.")
@click.pass_context
def errors_command(
    ctx: click.Context, target: str, rate: float, status: int, seed: int | None
) -> None:
    """Answer a share --rate of TARGET's requests with --status instead of serving them."""
    _apply(ctx, target, {"error_rate": rate, "status": status, "seed": seed}, merge=True)


@chaos_command.command("restore")
@click.argument("target", required=False)
@click.pass_context
def restore_command(ctx: click.Context, target: str | None) -> None:
    """Remove the faults of TARGET (of every instance without one)."""
    _apply(ctx, target, None, merge=False)


def _status_rows(run: _Run, instances: Sequence[InstanceRecord]) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(headers=run.state.headers, timeout=_TIMEOUT) as http:
        for instance in instances:
            row: dict[str, Any] = {
                "instance_id": instance.instance_id,
                "service": instance.service,
                "state": instance.state,
                "health": instance.health,
                "fault": None,
            }
            if instance.url and instance.state == "running":
                try:
                    row["fault"] = _chaos_call(http, instance, "GET")
                except (httpx.HTTPError, click.ClickException) as exc:
                    row["error"] = (
                        exc.message if isinstance(exc, click.ClickException) else str(exc)
                    )
            rows.append(row)
    return rows


@chaos_command.command("status")
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status_command(ctx: click.Context, target: str | None, as_json: bool) -> None:
    """The current faults of every instance (or of TARGET's)."""
    run = _run(ctx)
    rows = _status_rows(run, _select(run, target))
    if as_json:
        click.echo(json.dumps({"instances": rows}, indent=1))
        return
    click.echo(f"{'INSTANCE':<20} {'STATE':<10} {'HEALTH':<9} FAULT")
    for row in rows:
        if row["fault"] is not None:
            fault = _describe(row["fault"])
        else:
            fault = row.get("error", "-")
        click.echo(f"{row['instance_id']:<20} {row['state']:<10} {row['health']:<9} {fault}")
