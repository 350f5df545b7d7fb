"""``cairn demo``: a scripted tour of the example shop that exits by itself.

Each step waits on what it shows (a trace in the collector, a breaker state in
the orders service's metrics) with a deadline, never on a fixed sleep, and says
what it saw. The tour fails (exit 1) when something it promises does not
happen: a failed order while an instance dies, a breaker that does not open or
close, a process left behind.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from cairn.collector._client import CollectorClient
from cairn.collector._render import Style, render_logs, render_trace_tree
from cairn.platform._errors import PlatformError
from cairn.platform._load import DEFAULT_MIX, LoadSummary, parse_mix, run_load
from cairn.platform._manifest import load_manifest
from cairn.platform._state import InstanceRecord, _alive
from cairn.platform._supervisor import Supervisor

__all__ = ["TourFailed", "run_tour"]

T = TypeVar("T")
Say = Callable[[str], None]
_CHAOS = "/_cairn/chaos"


class TourFailed(PlatformError):
    """Something the tour shows did not happen."""


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def _until(
    what: str, probe: Callable[[], Awaitable[T | None]], *, deadline: float = 20.0
) -> T:
    """Poll ``probe`` until it returns something, or fail saying ``what`` never happened."""
    end = time.monotonic() + deadline
    delay = 0.05
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > end:
            raise TourFailed(f"{what}: not seen within {deadline:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


def _breaker_states(text: str, policy: str) -> str | None:
    """The current state of breaker ``policy`` in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        if family.name != "cairn_breaker_state":
            continue
        for sample in family.samples:
            if sample.labels.get("policy") == policy and sample.value == 1.0:
                return sample.labels.get("state")
    return None


class _Tour:
    def __init__(self, sup: Supervisor, say: Say, style: Style) -> None:
        self.sup = sup
        self.say = say
        self.style = style
        self.http = httpx.AsyncClient(timeout=10.0, trust_env=False)
        self.collector = CollectorClient(sup.collector_url, timeout=10.0)

    def instance(self, instance_id: str) -> InstanceRecord:
        for record in self.sup.snapshot():
            if record.instance_id == instance_id:
                return record
        raise TourFailed(f"the manifest has no instance {instance_id}")

    def url(self, instance_id: str) -> str:
        found = self.instance(instance_id).url
        if not found:
            raise TourFailed(f"{instance_id} has no address")
        return found

    async def load(self, seconds: float, rate: float = 20.0) -> LoadSummary:
        return await run_load(
            [self.url("orders-1")],
            parse_mix(DEFAULT_MIX),
            rate=rate,
            duration=seconds,
            concurrency=8,
            seed=7,
        )

    async def in_collector(self, fn: Callable[[], T | None]) -> T | None:
        return await asyncio.to_thread(fn)

    async def step_trace(self) -> None:
        self.say("\n2 · the seed's trace: GET /orders/123, from the collector")
        since = _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")
        response = await self.http.get(self.url("orders-1") + "/orders/123")
        if response.status_code != 200:
            raise TourFailed(f"GET /orders/123 answered {response.status_code}: {response.text}")

        def complete() -> Any:
            found = self.collector.traces(query='url.path:"/orders/123"', since=since, limit=1)
            trace = self.collector.trace(found[0].trace_id) if found else None
            if trace is None:
                return None
            names = {span.name for span in trace.spans}
            wanted = {"db.query", "inventory.check"}
            has_inventory = any(
                s.service == "inventory" and s.kind == "server" for s in trace.spans
            )
            return trace if wanted <= names and has_inventory else None

        trace = await _until(
            "the trace of GET /orders/123 in the collector",
            lambda: self.in_collector(complete),
        )
        self.say(f"  cairn trace {trace.trace_id}\n")
        tree = render_trace_tree(trace.spans, style=self.style)
        self.say("\n".join("  " + line for line in tree.splitlines()))

    async def step_logs(self) -> None:
        query = "event:purchase_completed"
        self.say(f"\n3 · the seed's log query: cairn logs '{query} AND trace_id:…'")
        trace_id, parent = _traceparent()
        response = await self.http.post(
            self.url("orders-1") + "/orders",
            json={"user_id": 123, "item_id": 7, "quantity": 1},
            headers={"traceparent": parent},
        )
        if response.status_code != 201:
            raise TourFailed(f"POST /orders answered {response.status_code}: {response.text}")
        full = f"{query} AND trace_id:{trace_id}"

        def found() -> Any:
            return self.collector.logs(full, since="15m", limit=5) or None

        records = await _until(f"the log line for {full!r}", lambda: self.in_collector(found))
        self.say(render_logs(records, style=self.style, date=False))
        self.say(f"  → the purchase's log line carries its request's trace id {trace_id}")

    async def step_kill(self) -> None:
        self.say("\n4 · an inventory instance dies under load")
        load = asyncio.ensure_future(self.load(6.0))
        await asyncio.sleep(1.5)  # part of the script: the kill lands mid-load
        await self.sup.kill_instance("inventory-2")
        self.say("  inventory-2 killed (SIGKILL) while orders were being served")
        summary = await load
        failed = summary.error_count
        self.say(
            f"  {summary.completed} requests in {summary.elapsed:.1f} s, "
            f"p99 {summary.latency_ms.get('p99', 0):.0f} ms, failed orders: {failed}"
        )
        if failed:
            raise TourFailed(f"{failed} orders failed while inventory-2 died: {summary.errors}")
        await self.sup.start_instance("inventory-2")

        async def passing() -> bool | None:
            return True if self.instance("inventory-2").health == "passing" else None

        await _until("inventory-2 passing again", passing, deadline=30.0)
        self.say("  inventory-2 started again and passing")

    async def breaker(self, policy: str) -> str | None:
        response = await self.http.get(self.url("orders-1") + "/metrics")
        return _breaker_states(response.text, policy)

    async def chaos(self, instance_id: str, body: dict[str, Any] | None) -> None:
        headers = {"authorization": f"Bearer {self.sup.token}"}
        url = self.url(instance_id) + _CHAOS
        if body is None:
            response = await self.http.delete(url, headers=headers)
        else:
            response = await self.http.post(url, json=body, headers=headers)
        response.raise_for_status()

    async def step_breaker(self) -> None:
        policy = "inventory/inventory-1"
        self.say("\n5 · inventory-1 fails every request: its breaker opens, traffic shifts")
        await self.chaos("inventory-1", {"error_rate": 1.0, "status": 503})
        self.say("  cairn chaos errors inventory-1 --rate 1.0")
        load = asyncio.ensure_future(self.load(4.0))

        async def state_is(wanted: str) -> str | None:
            return wanted if await self.breaker(policy) == wanted else None

        await _until(f"breaker {policy} open", lambda: state_is("open"))
        self.say(f"  breaker {policy}: closed → open")
        summary = await load
        self.say(
            f"  {summary.completed} requests meanwhile, failed orders: {summary.error_count} "
            "(retries went to inventory-2)"
        )
        await self.chaos("inventory-1", None)
        self.say("  cairn chaos restore inventory-1")
        trickle = asyncio.ensure_future(self.load(30.0, rate=5.0))
        try:
            await _until(f"breaker {policy} closed", lambda: state_is("closed"), deadline=30.0)
        finally:
            trickle.cancel()
            await asyncio.gather(trickle, return_exceptions=True)
        self.say(f"  breaker {policy}: open → half_open → closed (a trial call succeeded)")

    async def close(self) -> None:
        await self.http.aclose()
        self.collector.close()


async def run_tour(manifest_path: Path, *, say: Say = print, style: Style | None = None) -> int:
    """Run the tour on ``manifest_path`` (the example shop); 0 when every step held."""
    manifest = load_manifest(manifest_path)
    style = style or Style.for_terminal()
    say(f"1 · cairn up {manifest_path}")
    sup = Supervisor(manifest, registry_port=0, collector_port=0, dashboard=False, control=False)
    started = time.monotonic()
    await sup.start()
    pids: list[int] = []
    try:
        say(f"  registry {sup.registry_url}   collector {sup.collector_url}")
        for record in sup.snapshot():
            say(f"  {record.instance_id:<12} {record.health:<8} {record.url}")
        say(f"  all passing in {time.monotonic() - started:.1f} s")
        tour = _Tour(sup, say, style)
        try:
            summary = await tour.load(3.0)
            say(
                f"  light traffic: {summary.completed} requests, {summary.error_count} errors, "
                f"p50 {summary.latency_ms.get('p50', 0):.0f} ms"
            )
            await tour.step_trace()
            await tour.step_logs()
            await tour.step_kill()
            await tour.step_breaker()
        except httpx.HTTPError as exc:
            raise TourFailed(f"a request of the tour failed: {exc!r}") from exc
        finally:
            await tour.close()
        pids = [child.pid for child in sup.children() if child.pid]
    finally:
        say("\n6 · shutdown")
        await sup.stop()
    left = [pid for pid in pids if _alive(pid)]
    if left:
        raise TourFailed(f"processes left behind: {left}")
    say(f"  every process stopped ({len(pids)} checked); the tour is over")
    return 0
