"""Records, check state machine, durations, the HTTP probe and the probe loop."""

from __future__ import annotations

import asyncio

import pytest
from disc_support import StatusTarget, free_port
from hypothesis import given
from hypothesis import strategies as st

from cairn.discovery import Health, HTTPCheck, Instance, InstanceSet, TTLCheck
from cairn.discovery._codec import dumps_instance, loads_instance
from cairn.discovery._health import CheckState, Prober, format_duration, http_probe, parse_duration
from cairn.testing import VirtualClock

# -- records -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": "has space"}, "Instance.service"),
        ({"service": ""}, "Instance.service"),
        ({"id": "a/b"}, "Instance.id"),
        ({"address": ""}, "Instance.address"),
        ({"port": 70000}, "Instance.port"),
        ({"port": True}, "Instance.port"),
        ({"tags": "blue"}, "sequence of strings"),
        ({"tags": ("",)}, "Instance.tags"),
        ({"meta": {"k": 1}}, "Instance.meta"),
        ({"check": "ttl"}, "Instance.check"),
    ],
)
def test_instance_refuses_bad_fields(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"service": "users", "id": "u1", "address": "10.0.0.1", "port": 80}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Instance(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: TTLCheck(ttl=0), "TTLCheck.ttl"),
        (lambda: TTLCheck(ttl=float("nan")), "TTLCheck.ttl"),
        (lambda: TTLCheck(deregister_after=-1), "deregister_after"),
        (lambda: HTTPCheck("ftp://x/"), "HTTPCheck.url"),
        (lambda: HTTPCheck("http:///nohost"), "HTTPCheck.url"),
        (lambda: HTTPCheck("http://x/", interval=0), "interval"),
        (lambda: HTTPCheck("http://x/", timeout=0), "timeout"),
        (lambda: HTTPCheck("http://x/", failures_before_critical=0), "failures_before_critical"),
        (lambda: HTTPCheck("http://x/", deregister_after=-5), "deregister_after"),
    ],
)
def test_checks_refuse_bad_settings(factory: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()  # type: ignore[operator]


def test_instance_is_frozen_hashable_and_meta_read_only() -> None:
    meta = {"zone": "a"}
    instance = Instance("users", "u1", "::1", 80, tags=["x"], meta=meta)  # type: ignore[arg-type]
    meta["zone"] = "b"
    assert instance.meta["zone"] == "a"
    assert instance.tags == ("x",)
    assert instance.host_port == "[::1]:80"
    assert Instance("users", "u1", "10.0.0.1", 80).host_port == "10.0.0.1:80"
    assert hash(instance) == hash(
        Instance("users", "u1", "::1", 80, tags=("x",), meta={"zone": "a"})
    )
    with pytest.raises(TypeError):
        instance.meta["zone"] = "c"  # type: ignore[index]
    with pytest.raises(AttributeError):
        instance.port = 81  # type: ignore[misc]


def test_instance_set_is_a_sequence_with_context() -> None:
    a = Instance("users", "u1", "10.0.0.1", 80)
    b = Instance("users", "u2", "10.0.0.2", 80)
    found = InstanceSet(
        "users",
        [a, b],
        health={"u1": Health.PASSING, "u2": Health.PASSING},
        version=3,
        registered=2,
        healthy=2,
    )
    assert list(found) == [a, b]
    assert found[1] is b
    assert found[:1] == (a,)
    assert found.index(b) == 1  # Sequence.index: the position of an instance
    assert found.version == 3
    assert found.health("nope") is None
    assert "2 registered, 2 passing" in repr(found)
    assert found != ["not", "a", "set"]
    same = InstanceSet(
        "users", (a, b), health=dict(found._health), version=9, registered=2, healthy=2
    )
    assert found == same  # the version is not part of the content
    with pytest.raises(TypeError):
        hash(found)


names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)


@given(
    service=names,
    id_=names,
    port=st.integers(0, 65535),
    tags=st.lists(st.text(min_size=1, max_size=10), max_size=5),
    meta=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5),
    check=st.one_of(
        st.none(),
        st.builds(
            TTLCheck, ttl=st.floats(0.05, 1000), deregister_after=st.none() | st.floats(0, 1000)
        ),
        st.builds(
            HTTPCheck,
            url=st.just("http://127.0.0.1:1/health"),
            interval=st.floats(0.01, 100),
            failures_before_critical=st.integers(1, 10),
        ),
    ),
)
def test_instances_survive_the_storage_codec(
    service: str,
    id_: str,
    port: int,
    tags: list[str],
    meta: dict[str, str],
    check: TTLCheck | HTTPCheck | None,
) -> None:
    instance = Instance(service, id_, "10.0.0.1", port, tags=tuple(tags), meta=meta, check=check)
    assert loads_instance(dumps_instance(instance)) == instance


# -- durations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("5", 5.0),
        (2, 2.0),
        ("1.5s", 1.5),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10 s", "ten", "5x", "s10"])
def test_parse_duration_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(1, 10_000_000))
def test_format_then_parse_round_trips_milliseconds(ms: int) -> None:
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


# -- the check state machine ----------------------------------------------------


def test_check_state_counts_consecutive_results() -> None:
    check = HTTPCheck("http://x/", failures_before_critical=3, successes_before_passing=2)
    state = CheckState(check, now=0.0)
    assert state.health is Health.CRITICAL
    assert state.critical_since == 0.0
    assert state.record(Health.PASSING, now=1.0) is False  # one success is not enough
    assert state.record(Health.PASSING, now=2.0) is True
    assert state.health is Health.PASSING
    assert state.critical_since is None
    for t in (3.0, 4.0):
        assert state.record(Health.CRITICAL, now=t) is False
    assert state.record(Health.CRITICAL, now=5.0) is True
    assert state.critical_since == 5.0
    assert state.record(Health.WARNING, now=6.0) is True
    assert state.health is Health.WARNING


results = st.lists(st.sampled_from([Health.PASSING, Health.CRITICAL]), max_size=60)


@given(results, st.integers(1, 5), st.integers(1, 5))
def test_check_state_matches_a_run_length_model(
    seq: list[Health], fails: int, successes: int
) -> None:
    check = HTTPCheck(
        "http://x/", failures_before_critical=fails, successes_before_passing=successes
    )
    state = CheckState(check, now=0.0)
    expected = Health.CRITICAL
    run_kind, run = None, 0
    for t, result in enumerate(seq, start=1):
        run = run + 1 if result is run_kind else 1
        run_kind = result
        if result is Health.PASSING and run >= successes:
            expected = Health.PASSING
        if result is Health.CRITICAL and run >= fails:
            expected = Health.CRITICAL
        state.record(result, now=float(t))
        assert state.health is expected
        assert (state.critical_since is not None) == (expected is Health.CRITICAL)


def test_overdue_only_with_deregister_after() -> None:
    state = CheckState(HTTPCheck("http://x/", deregister_after=5), now=0.0)
    assert not state.overdue(now=4.9)
    assert state.overdue(now=5.0)
    assert not CheckState(HTTPCheck("http://x/"), now=0.0).overdue(now=1e9)


# -- the probe and its loop ----------------------------------------------------------


async def test_http_probe_classifies_answers_and_failures() -> None:
    with StatusTarget() as target:
        check = HTTPCheck(target.url, timeout=2)
        for status, health in [
            (200, Health.PASSING),
            (204, Health.PASSING),
            (429, Health.WARNING),
            (503, Health.CRITICAL),
        ]:
            target.status = status
            got, output = await http_probe(check)
            assert got is health, status
            assert str(status) in output
    refused = HTTPCheck(f"http://127.0.0.1:{free_port()}/health", timeout=1)
    got, output = await http_probe(refused)
    assert got is Health.CRITICAL
    assert "ConnectError" in output


async def test_prober_reports_on_its_interval_and_survives_a_broken_probe() -> None:
    clock = VirtualClock()
    reports: list[tuple[str, Health, float, float]] = []
    expired: list[str] = []
    calls = 0

    async def probe(check: HTTPCheck) -> tuple[Health, str]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("boom")
        return Health.PASSING, "ok"

    async def report(instance: Instance, health: Health, output: str, valid_for: float) -> None:
        reports.append((instance.id, health, valid_for, clock.monotonic()))

    async def expire(instance: Instance) -> None:
        expired.append(instance.id)

    prober = Prober(report=report, expire=expire, clock=clock, probe=probe)
    check = HTTPCheck("http://x/", interval=5, timeout=1)
    prober.start(Instance("users", "u1", "10.0.0.1", 80, check=check))
    assert prober.probing() == {"u1"}
    while len(reports) < 3:
        await clock.asleep(1)
    await prober.aclose()
    assert [(r[1], r[3]) for r in reports[:3]] == [
        (Health.PASSING, 0.0),
        (Health.CRITICAL, 5.0),
        (Health.PASSING, 10.0),
    ]
    assert reports[0][2] == check.lapse == 11.0
    assert expired == []
    assert prober.probing() == frozenset()


async def test_prober_expires_an_instance_critical_too_long() -> None:
    clock = VirtualClock()
    expired = asyncio.Event()

    async def probe(check: HTTPCheck) -> tuple[Health, str]:
        return Health.CRITICAL, "down"

    async def report(instance: Instance, health: Health, output: str, valid_for: float) -> None:
        pass

    async def expire(instance: Instance) -> None:
        expired.set()

    prober = Prober(report=report, expire=expire, clock=clock, probe=probe)
    prober.start(
        Instance(
            "users",
            "u1",
            "10.0.0.1",
            80,
            check=HTTPCheck("http://x/", interval=2, deregister_after=7),
        )
    )
    await expired.wait()
    assert clock.monotonic() == 8.0  # first probe at 0 found it critical since 0; 8 >= 7
    assert prober.probing() == frozenset()
    await prober.aclose()
