"""The async client's pipeline against scripted instances: retries, idempotency, Retry-After, errors."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from client_support import Scripted, drop, instance, ok, refuse, registry_with, status
from prometheus_client import CollectorRegistry

from cairn.client import (
    InstanceEjected,
    LeastOutstanding,
    NoHealthyInstance,
    OutlierDetection,
    RoundRobin,
    ServiceClient,
)
from cairn.client._core import describe_empty
from cairn.discovery import Instance, InstanceSet, SQLiteRegistry, TTLCheck
from cairn.resilience import BreakerState, CircuitBreaker, RetryBudget, TimeoutExceeded, wait_fixed
from cairn.testing import VirtualClock, capture_events


def _client(
    registry: SQLiteRegistry, script: Scripted, clock: VirtualClock, **settings: object
) -> ServiceClient:
    defaults: dict[str, object] = {"total_timeout": None, "attempt_timeout": None}
    defaults.update(settings)
    return ServiceClient(
        registry, http=script.http(), clock=clock, balancer=RoundRobin(), **defaults
    )


async def test_a_failed_attempt_is_retried_on_another_instance() -> None:
    registry = await registry_with(instance(1), instance(2), instance(3))
    script = Scripted({9001: status(503), 9002: refuse, 9003: drop})
    clock = VirtualClock()
    client = _client(registry, script, clock, attempts=3)
    try:
        for _ in range(3):
            script.calls.clear()
            with contextlib.suppress(httpx.HTTPError):  # the last attempt's error, or its answer
                assert (await client.get("svc", "/x")).status_code == 503
            # Three attempts, three different instances: never the one that just failed.
            assert sorted(script.ports()) == [9001, 9002, 9003]
        script.behaviour[9003] = ok
        script.calls.clear()
        response = await client.get("svc", "/x")
        assert response.status_code == 200
        assert response.text == "9003"
        assert len(set(script.ports())) == len(script.ports())
    finally:
        await client.aclose()
        await registry.aclose()


async def test_with_one_instance_a_retry_goes_back_to_it() -> None:
    registry = await registry_with(instance(1))
    answers = iter([status(503), status(502), ok])
    script = Scripted({9001: lambda r: next(answers)(r)})
    clock = VirtualClock()
    client = _client(registry, script, clock)
    try:
        response = await client.get("svc", "/x")
        assert response.status_code == 200
        assert script.ports() == [9001, 9001, 9001]
        assert len(clock.sleeps) == 2
        assert all(0 <= s <= 2.0 for s in clock.sleeps)
    finally:
        await client.aclose()
        await registry.aclose()


async def test_retries_run_out_and_the_last_response_is_returned() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: status(503), 9002: status(500)})
    client = _client(registry, script, VirtualClock(), attempts=4)
    try:
        response = await client.get("svc", "/x")
        assert response.status_code in (500, 503)
        assert len(script.calls) == 4
    finally:
        await client.aclose()
        await registry.aclose()


@pytest.mark.parametrize(
    ("method", "idempotent", "behaviour", "attempts"),
    [
        ("POST", None, status(503), 1),  # may have been handled: not repeated
        ("POST", None, drop, 1),
        ("POST", None, refuse, 2),  # never left: safe to send elsewhere
        ("POST", True, status(503), 2),  # marked idempotent: retried like a GET
        ("PATCH", None, status(502), 1),
        ("PUT", None, status(503), 2),
        ("DELETE", None, drop, 2),
        ("GET", False, status(503), 1),  # marked unsafe
    ],
)
async def test_idempotency_decides_what_is_retried(
    method: str, idempotent: bool | None, behaviour: object, attempts: int
) -> None:
    registry = await registry_with(instance(1), instance(2))
    client = _client(registry, Scripted(), VirtualClock(), attempts=2)
    script = Scripted({9001: behaviour, 9002: behaviour})  # type: ignore[dict-item]
    client._http = script.http()
    try:
        with contextlib.suppress(httpx.HTTPError):
            await client.request(method, "svc", "/x", idempotent=idempotent, content=b"body")
        assert len(script.calls) == attempts
        assert {m for m, _ in script.calls} == {method}
    finally:
        await client._http.aclose()
        await registry.aclose()


async def test_retry_after_is_honoured_and_a_long_one_is_not_waited_for() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted(
        {9001: status(503, **{"Retry-After": "2"}), 9002: status(503, **{"Retry-After": "2"})}
    )
    clock = VirtualClock()
    client = _client(registry, script, clock, attempts=3, max_retry_after=5.0)
    try:
        response = await client.get("svc", "/x")
        assert response.status_code == 503
        assert clock.sleeps == [2.0, 2.0]
        script.behaviour = {
            9001: status(429, **{"Retry-After": "60"}),
            9002: status(429, **{"Retry-After": "60"}),
        }
        script.calls.clear()
        clock.sleeps.clear()
        response = await client.get("svc", "/x")
        assert response.status_code == 429
        assert len(script.calls) == 1
        assert clock.sleeps == []
    finally:
        await client.aclose()
        await registry.aclose()


async def test_no_healthy_instance_says_what_the_registry_said() -> None:
    clock = VirtualClock()
    registry = SQLiteRegistry(":memory:", clock=clock)
    for n in (1, 2):
        await registry.register(
            Instance("inventory", f"inv-{n}", "127.0.0.1", 9000 + n, check=TTLCheck(ttl=1.0))
        )
    clock.advance(1.5)  # both stop heartbeating: critical
    client = _client(registry, Scripted(), clock)
    try:
        with pytest.raises(NoHealthyInstance) as caught:
            await client.get("inventory", "/items")
        assert caught.value.service == "inventory"
        assert caught.value.detail == "0 of 2 instances passing"
        assert "'inventory': 0 of 2 instances passing" in str(caught.value)
        with pytest.raises(NoHealthyInstance, match="0 of 0 instances passing"):
            await client.get("nothing", "/")
    finally:
        await client.aclose()
        await registry.aclose()


def test_no_healthy_instance_names_protection_and_tags() -> None:
    view = InstanceSet("svc", (), health={}, version=3, registered=2, healthy=0, protected=True)
    assert describe_empty(view, ()) == "0 of 2 instances passing; protection threshold engaged"
    tagged = InstanceSet("svc", (), health={}, version=3, registered=2, healthy=2)
    assert describe_empty(tagged, ("blue",)) == (
        "2 of 2 instances passing; none of them carries every tag of ('blue',)"
    )


async def test_tags_select_instances() -> None:
    blue = Instance("svc", "svc-1", "127.0.0.1", 9001, tags=("blue",))
    green = Instance("svc", "svc-2", "127.0.0.1", 9002, tags=("green",))
    registry = await registry_with(blue, green)
    script = Scripted()
    client = _client(registry, script, VirtualClock())
    try:
        for _ in range(4):
            assert (await client.get("svc", "/", tags=("green",))).text == "9002"
        with pytest.raises(NoHealthyInstance, match="carries every tag"):
            await client.get("svc", "/", tags=("red",))
    finally:
        await client.aclose()
        await registry.aclose()


async def test_per_call_overrides_win_over_the_client_defaults() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: status(503), 9002: status(503)})
    clock = VirtualClock()
    client = _client(registry, script, clock, attempts=3, backoff=wait_fixed(1.0))
    try:
        await client.get("svc", "/")
        assert len(script.calls) == 3
        assert clock.sleeps == [1.0, 1.0]
        script.calls.clear()
        clock.sleeps.clear()
        await client.get("svc", "/", attempts=1)
        assert len(script.calls) == 1
        script.calls.clear()
        await client.get("svc", "/", backoff=wait_fixed(0.25), attempts=2)
        assert len(script.calls) == 2
        assert clock.sleeps == [0.25]
        script.calls.clear()
        await client.get("svc", "/", retry_statuses=(500,))  # 503 is not retried now
        assert len(script.calls) == 1
        script.calls.clear()
        await client.get("svc", "/", balancer=LeastOutstanding(), attempts=1)
        assert len(script.calls) == 1
        assert client.defaults.attempts == 3  # overrides do not stick
        with pytest.raises(TypeError, match="total_timeout"):
            await client.get("svc", "/", timeout=3)
        with pytest.raises(ValueError, match="attempts"):
            await client.get("svc", "/", attempts=0)
    finally:
        await client.aclose()
        await registry.aclose()


async def test_total_timeout_bounds_the_whole_call() -> None:
    registry = await registry_with(instance(1))
    clock = VirtualClock()

    async def slow(request: httpx.Request) -> httpx.Response:
        await clock.asleep(5.0)
        return httpx.Response(200)

    http = httpx.AsyncClient(transport=httpx.MockTransport(slow))
    client = ServiceClient(
        registry, http=http, clock=clock, total_timeout=3.0, attempt_timeout=None
    )
    try:
        with pytest.raises(TimeoutExceeded, match=r"svc\.total"):
            await client.get("svc", "/")
        start = clock.monotonic()
        with pytest.raises(TimeoutExceeded, match=r"svc\.attempt"):
            await client.get("svc", "/", total_timeout=None, attempt_timeout=1.0, attempts=2)
        assert clock.monotonic() - start == pytest.approx(2.0, abs=0.3)  # two attempts of 1 s
    finally:
        await http.aclose()
        await registry.aclose()


async def test_consecutive_failures_eject_an_instance_before_the_registry_notices() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: refuse})
    clock = VirtualClock()
    seen: list[object] = []
    client = _client(
        registry,
        script,
        clock,
        outliers=OutlierDetection(consecutive_failures=3, base_ejection=10.0),
        listeners=(seen.append,),
        breaker=None,
    )
    try:
        for _ in range(10):
            assert (await client.get("svc", "/")).text == "9002"
        assert script.ports().count(9001) == 3  # then ejected
        ejected = [e for e in seen if isinstance(e, InstanceEjected)]
        assert len(ejected) == 1
        assert ejected[0].instance_id == "svc-1"
        assert ejected[0].policy == "svc"
        stats = {s.instance_id: s for s in client.stats("svc")}
        assert stats["svc-1"].ejected_for == pytest.approx(10.0 - 0.0, abs=0.5)
        assert stats["svc-2"].ejected_for == 0.0
        assert stats["svc-1"].ejections == 1
        script.calls.clear()
        clock.advance(10.0)
        script.behaviour[9001] = ok
        for _ in range(4):
            await client.get("svc", "/")
        assert script.ports().count(9001) == 2  # back in rotation
    finally:
        await client.aclose()
        await registry.aclose()


async def test_when_every_instance_is_ejected_they_are_tried_anyway() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: status(500), 9002: status(500)})
    client = _client(
        registry,
        script,
        VirtualClock(),
        attempts=1,
        outliers=OutlierDetection(consecutive_failures=1, max_ejected_fraction=1.0),
        breaker=None,
    )
    try:
        for _ in range(6):
            await client.get("svc", "/")
        assert len(script.calls) == 6  # panic mode: never refused for want of instances
    finally:
        await client.aclose()
        await registry.aclose()


async def test_a_breaker_per_instance_steers_traffic_away() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: status(500)})
    clock = VirtualClock()

    def breaker(service: str, item: Instance) -> CircuitBreaker:
        return CircuitBreaker(
            name=f"{service}/{item.id}",
            failure_threshold=2,
            recovery_timeout=30.0,
            failure_if_result=lambda r: r.status_code >= 500,
            clock=clock,
        )

    client = _client(registry, script, clock, attempts=1, breaker=breaker, outliers=None)
    try:
        for _ in range(8):
            await client.get("svc", "/")
        assert script.ports().count(9001) == 2
        states = {s.instance_id: s.breaker for s in client.stats("svc")}
        assert states == {"svc-1": BreakerState.OPEN, "svc-2": BreakerState.CLOSED}
    finally:
        await client.aclose()
        await registry.aclose()


async def test_a_retry_budget_caps_retries() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: status(503), 9002: status(503)})
    clock = VirtualClock()
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10.0, clock=clock)  # 2 retries
    client = _client(registry, script, clock, attempts=3, budget=budget)
    try:
        with capture_events() as events:
            for _ in range(3):
                await client.get("svc", "/")
        assert len(script.calls) == 3 + 2
        assert [getattr(e, "reason", None) for e in events].count("budget") >= 1
        assert budget.stats().refused >= 1
    finally:
        await client.aclose()
        await registry.aclose()


async def test_metrics_per_service_and_instance() -> None:
    registry = await registry_with(instance(1), instance(2))
    script = Scripted({9001: refuse})
    metrics = CollectorRegistry()
    client = _client(registry, script, VirtualClock(), metrics=metrics, breaker=None)
    try:
        for _ in range(4):
            await client.get("svc", "/")

        def value(name: str, **labels: str) -> float:
            return metrics.get_sample_value(name, labels) or 0.0

        assert value("cairn_client_requests_total", service="svc", outcome="2xx") == 4
        assert (
            value("cairn_client_attempts_total", service="svc", instance="svc-1", outcome="error")
            == script.ports().count(9001)
            >= 3
        )
        assert (
            value("cairn_client_attempts_total", service="svc", instance="svc-2", outcome="2xx")
            == 4
        )
        assert value("cairn_client_outstanding", service="svc", instance="svc-2") == 0
        assert value("cairn_client_request_duration_seconds_count", service="svc") == 4
        # A second client on the same registry shares the metric families.
        other = ServiceClient(registry, http=script.http(), metrics=metrics)
        await other.aclose()
    finally:
        await client.aclose()
        await registry.aclose()


async def test_outstanding_requests_are_counted_while_in_flight() -> None:
    registry = await registry_with(instance(1))
    seen: list[int] = []
    client: ServiceClient

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(client.stats("svc")[0].outstanding)
        return httpx.Response(200)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ServiceClient(registry, http=http)
    try:
        await client.get("svc", "/")
        assert seen == [1]
        assert client.stats("svc")[0].outstanding == 0
        assert client.stats("unknown") == ()
    finally:
        await http.aclose()
        await registry.aclose()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scheme": "ftp"}, "scheme"),
        ({"budget": 3}, "budget"),
        ({"outliers": 5}, "outliers"),
        ({"breaker": 5}, "breaker"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"clock": object()}, "clock"),
        ({"listeners": (1,)}, "listeners"),
        ({"attempts": 0}, "attempts"),
        ({"total_timeout": -1}, "total_timeout"),
        ({"retry_statuses": (42,)}, "retry_statuses"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"backoff": 3}, "backoff"),
        ({"balancer": "rr"}, "balancer"),
        ({"metrics": "yes"}, "metrics"),
    ],
)
async def test_bad_settings_are_refused_at_construction(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceClient("sqlite://", **settings)


async def test_bad_registry_is_refused() -> None:
    with pytest.raises(ValueError, match="registry"):
        ServiceClient(42)  # type: ignore[arg-type]


async def test_every_verb_goes_through_request() -> None:
    registry = await registry_with(instance(1))
    script = Scripted()
    async with ServiceClient(registry, http=script.http()) as client:
        for verb in ("get", "head", "options", "post", "put", "patch", "delete"):
            response = await getattr(client, verb)("svc", "/")
            assert response.status_code == 200
    assert [m for m, _ in script.calls] == [
        "GET",
        "HEAD",
        "OPTIONS",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    ]
    await registry.aclose()
