"""Bulkhead: limits, FIFO queueing, rejection, and no leaked slot, for threads and tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cairn.resilience import BulkheadFullError, BulkheadRejected
from cairn.resilience._bulkhead import Bulkhead, BulkheadStats, _Slots, _TaskWaiter, _ThreadWaiter
from cairn.testing import VirtualClock, capture_events, virtual_time

pytestmark = pytest.mark.timeout(60)  # a leaked slot shows up as a hang: fail it early

WAIT = 10.0  # the most any test waits for a thread to reach a state; normally microseconds


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for another thread to bring about ``condition`` (fails after ``timeout``)."""
    give_up = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < give_up, "condition not reached in time"
        pause.wait(0.0005)


async def turns_until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let the event loop run until ``condition`` holds (fails after ``turns`` turns)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


class Holders:
    """Threads that each take a slot and hold it until told to let go."""

    def __init__(self, bulkhead: Bulkhead) -> None:
        self.bulkhead = bulkhead
        self.order: list[int] = []
        self.errors: dict[int, BaseException] = {}
        self.release: dict[int, threading.Event] = {}
        self.threads: dict[int, threading.Thread] = {}

    def start(self, key: int) -> None:
        self.release[key] = threading.Event()

        def hold() -> None:
            self.order.append(key)
            self.release[key].wait(WAIT)

        def run() -> None:
            try:
                self.bulkhead.call(hold)
            except BaseException as exc:
                self.errors[key] = exc

        thread = threading.Thread(target=run, name=f"holder-{key}")
        self.threads[key] = thread
        thread.start()

    def let_go(self, key: int) -> None:
        self.release[key].set()
        self.threads[key].join(WAIT)
        assert not self.threads[key].is_alive()


# -- configuration ----------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be >= 1"),
        ({"max_concurrent": 2.5}, "max_concurrent must be an int"),
        ({"max_concurrent": True}, "max_concurrent must be an int"),
        ({"max_concurrent": 1, "max_queue": -1}, "max_queue must be an int >= 0"),
        ({"max_concurrent": 1, "max_queue": False}, "max_queue must be an int >= 0"),
        ({"max_concurrent": 1, "max_queue": 1, "queue_timeout": 0}, "queue_timeout must be"),
        ({"max_concurrent": 1, "max_queue": 1, "queue_timeout": math.inf}, "queue_timeout must"),
        ({"max_concurrent": 1, "max_queue": 1, "queue_timeout": "1"}, "queue_timeout must be"),
        ({"max_concurrent": 1, "queue_timeout": 1.0}, "no effect with max_queue=0"),
        ({"max_concurrent": 1, "name": ""}, "name must be"),
        ({"max_concurrent": 1, "listeners": [None]}, "listeners must be"),
    ],
)
def test_rejects_nonsense_configuration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bulkhead(**kwargs)


def test_configuration_is_readable_and_keyword_only() -> None:
    with pytest.raises(TypeError):
        Bulkhead(3)  # type: ignore[call-arg]
    bulkhead = Bulkhead(max_concurrent=3, max_queue=2, queue_timeout=1, name="db")
    assert (bulkhead.max_concurrent, bulkhead.max_queue, bulkhead.queue_timeout) == (3, 2, 1.0)
    assert repr(bulkhead) == (
        "Bulkhead(max_concurrent=3, max_queue=2, queue_timeout=1.0, name='db')"
    )
    assert Bulkhead(max_concurrent=1).queue_timeout is None


def test_stats_are_a_frozen_snapshot() -> None:
    bulkhead = Bulkhead(max_concurrent=2, max_queue=1, name="db")
    with bulkhead:
        stats = bulkhead.stats()
    assert stats == BulkheadStats(
        name="db", max_concurrent=2, max_queue=1, running=1, queued=0, rejected=0
    )
    assert bulkhead.stats().running == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.running = 5  # type: ignore[misc]


# -- sync (threads) -----------------------------------------------------------


def test_at_most_max_concurrent_run_and_the_next_is_rejected_at_once() -> None:
    seen: list[object] = []
    bulkhead = Bulkhead(max_concurrent=2, name="db", listeners=[seen.append])
    holders = Holders(bulkhead)
    for key in (1, 2):
        holders.start(key)
    wait_until(lambda: bulkhead.stats().running == 2)
    ran: list[bool] = []

    def work() -> None:
        ran.append(True)

    with capture_events() as events, pytest.raises(BulkheadFullError) as info:
        bulkhead.call(work)
    assert ran == []
    assert (info.value.name, info.value.max_concurrent, info.value.max_queue) == ("db", 2, 0)
    assert [type(e) for e in events] == [BulkheadRejected]
    assert events[0] == BulkheadRejected(
        policy="db", at=events[0].at, max_concurrent=2, max_queue=0
    )
    assert seen == events
    assert bulkhead.stats().rejected == 1
    for key in (1, 2):
        holders.let_go(key)
    bulkhead.call(work)
    assert ran == [True]
    assert bulkhead.stats().running == 0


def test_queued_threads_enter_in_arrival_order() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=3)
    holders = Holders(bulkhead)

    def occupied(count: int) -> Callable[[], bool]:
        def check() -> bool:
            stats = bulkhead.stats()
            return stats.running + stats.queued == count

        return check

    def running(key: int) -> Callable[[], bool]:
        return lambda: holders.order[-1:] == [key]

    for key in range(4):
        holders.start(key)
        wait_until(occupied(key + 1))  # the next one starts once this one is in
    assert bulkhead.stats().queued == 3
    with pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: None)
    for key in range(4):
        wait_until(running(key))
        holders.let_go(key)
    assert holders.order == [0, 1, 2, 3]
    assert holders.errors == {}
    assert bulkhead.stats() == BulkheadStats(
        name="bulkhead", max_concurrent=1, max_queue=3, running=0, queued=0, rejected=1
    )


def test_a_queued_thread_gives_up_after_queue_timeout() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=0.02)
    with bulkhead, capture_events() as events, pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: None)
    assert [type(e) for e in events] == [BulkheadRejected]
    assert bulkhead.stats() == BulkheadStats(
        name="bulkhead", max_concurrent=1, max_queue=1, running=0, queued=0, rejected=1
    )


def test_a_queued_thread_times_out_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5, clock=clock)
    outcome: list[BaseException] = []

    def queued() -> None:
        try:
            bulkhead.call(lambda: None)
        except BulkheadFullError as exc:
            outcome.append(exc)

    with bulkhead:
        thread = threading.Thread(target=queued)
        thread.start()
        wait_until(lambda: bulkhead.stats().queued == 1)
        clock.advance(4.9)
        assert thread.is_alive()  # virtual time has not run out yet
        clock.advance(0.1)
        thread.join(WAIT)
    assert len(outcome) == 1
    assert bulkhead.stats().queued == 0


def test_a_thread_granted_in_the_queue_before_its_timeout_runs() -> None:
    clock = VirtualClock()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5, clock=clock)
    holders = Holders(bulkhead)
    holders.start(0)
    wait_until(lambda: bulkhead.stats().running == 1)
    holders.start(1)
    wait_until(lambda: bulkhead.stats().queued == 1)
    holders.let_go(0)
    wait_until(lambda: holders.order == [0, 1])
    holders.let_go(1)
    assert holders.errors == {}


def test_slot_is_released_when_the_call_raises() -> None:
    bulkhead = Bulkhead(max_concurrent=1)

    def boom() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        bulkhead.call(boom)
    with pytest.raises(KeyError), bulkhead:
        boom()
    assert bulkhead.stats().running == 0


def test_decorates_plain_functions() -> None:
    bulkhead = Bulkhead(max_concurrent=1)

    @bulkhead
    def inside() -> int:
        """Report the running count."""
        return bulkhead.stats().running

    assert inside() == 1
    assert inside.__name__ == "inside"


def test_an_interrupted_thread_leaves_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1)

    def interrupted(self: Bulkhead, event: threading.Event) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(Bulkhead, "_wait", interrupted)
    with bulkhead, pytest.raises(KeyboardInterrupt):
        bulkhead.call(lambda: None)
    assert bulkhead.stats().queued == 0
    assert bulkhead.stats().running == 0


def test_an_interrupted_thread_passes_on_a_slot_granted_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1)

    def granted_then_interrupted(self: Bulkhead, event: threading.Event) -> bool:
        bulkhead.__exit__(None, None, None)  # the holder leaves: the slot is handed over
        assert event.is_set()
        raise KeyboardInterrupt

    monkeypatch.setattr(Bulkhead, "_wait", granted_then_interrupted)
    bulkhead.__enter__()
    with pytest.raises(KeyboardInterrupt):
        bulkhead.call(lambda: None)
    assert bulkhead.stats().running == 0


def test_a_slot_granted_as_the_wait_runs_out_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=1)

    def granted_at_the_last_moment(self: Bulkhead, event: threading.Event) -> bool:
        bulkhead.__exit__(None, None, None)
        return False  # the wait timed out just before the hand-over

    monkeypatch.setattr(Bulkhead, "_wait", granted_at_the_last_moment)
    bulkhead.__enter__()
    assert bulkhead.call(lambda: "ran") == "ran"
    assert bulkhead.stats() == BulkheadStats(
        name="bulkhead", max_concurrent=1, max_queue=1, running=0, queued=0, rejected=0
    )


def test_many_threads_never_exceed_the_limit() -> None:
    bulkhead = Bulkhead(max_concurrent=3, max_queue=100)
    start = threading.Barrier(12, timeout=WAIT)
    lock = threading.Lock()
    inside = 0
    most = 0

    def work() -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        with lock:
            inside -= 1

    def run() -> None:
        start.wait()
        for _ in range(200):
            bulkhead.call(work)

    threads = [threading.Thread(target=run) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert 1 <= most <= 3
    assert bulkhead.stats() == BulkheadStats(
        name="bulkhead", max_concurrent=3, max_queue=100, running=0, queued=0, rejected=0
    )


# -- async (tasks) ----------------------------------------------------------


async def test_tasks_queue_in_order_and_are_rejected_beyond_the_queue() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2)
    gates = [asyncio.Event() for _ in range(3)]
    order: list[int] = []

    async def hold(key: int) -> int:
        order.append(key)
        await gates[key].wait()
        return key

    tasks = [asyncio.create_task(bulkhead.acall(hold, key)) for key in range(3)]
    await turns_until(lambda: bulkhead.stats().queued >= 2)
    with capture_events() as events, pytest.raises(BulkheadFullError):
        await bulkhead.acall(hold, 99)
    assert [type(e) for e in events] == [BulkheadRejected]
    for gate in gates:
        gate.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2]
    assert order == [0, 1, 2]
    assert bulkhead.stats().running == 0


async def test_a_cancelled_waiter_leaves_the_queue_cleanly() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2)
    release = asyncio.Event()
    entered: list[str] = []

    async def work(name: str) -> None:
        entered.append(name)
        await release.wait()

    holder = asyncio.create_task(bulkhead.acall(work, "holder"))
    first = asyncio.create_task(bulkhead.acall(work, "first"))
    second = asyncio.create_task(bulkhead.acall(work, "second"))
    await turns_until(lambda: bulkhead.stats().queued >= 2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert bulkhead.stats().queued == 1
    release.set()
    await asyncio.gather(holder, second)
    assert entered == ["holder", "second"]
    assert bulkhead.stats().running == 0


async def test_a_waiter_cancelled_after_being_granted_passes_the_slot_on() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=2)
    entered: list[str] = []

    async def work(name: str) -> None:
        entered.append(name)

    await bulkhead.__aenter__()
    granted = asyncio.create_task(bulkhead.acall(work, "granted"))
    after = asyncio.create_task(bulkhead.acall(work, "after"))
    await turns_until(lambda: bulkhead.stats().queued >= 2)
    await bulkhead.__aexit__(None, None, None)  # hands the slot to `granted`...
    granted.cancel()  # ...which is cancelled before it could resume
    with pytest.raises(asyncio.CancelledError):
        await granted
    await after
    assert entered == ["after"]
    assert bulkhead.stats().running == 0


async def test_queue_timeout_is_exact_on_the_virtual_clock() -> None:
    clock = VirtualClock(start=10)
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=3, clock=clock)
    async with bulkhead:
        with capture_events() as events, pytest.raises(BulkheadFullError):
            await bulkhead.acall(clock.asleep, 1)
        assert clock.monotonic() == 13.0
    assert events == [BulkheadRejected(policy="bulkhead", at=13.0, max_concurrent=1, max_queue=1)]
    assert bulkhead.stats() == BulkheadStats(
        name="bulkhead", max_concurrent=1, max_queue=1, running=0, queued=0, rejected=1
    )


async def test_virtual_time_reaches_a_bulkhead_built_without_a_clock() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=30)
    with virtual_time() as clock:
        async with bulkhead:
            with pytest.raises(BulkheadFullError):
                await bulkhead.acall(clock.asleep, 1)
        assert clock.monotonic() == 30.0


async def test_a_slot_handed_over_as_the_queue_timeout_fires_is_used() -> None:
    clock = VirtualClock()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5, clock=clock)

    async def holder() -> None:
        async with bulkhead:
            await clock.asleep(5)  # leaves at the very instant the waiter gives up

    async def waiter() -> float:
        async with bulkhead:
            return clock.monotonic()

    first = asyncio.create_task(holder())
    await turns_until(lambda: bulkhead.stats().running >= 1)
    assert await waiter() == 5.0
    await first
    assert bulkhead.stats().rejected == 0


async def test_an_outer_cancel_during_a_timed_wait_propagates() -> None:
    clock = VirtualClock()
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5, clock=clock)
    async with bulkhead:
        waiter = asyncio.create_task(bulkhead.acall(clock.asleep, 0))
        await turns_until(lambda: bulkhead.stats().queued >= 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert bulkhead.stats().queued == 0
    assert bulkhead.stats().running == 0
    assert bulkhead.stats().rejected == 0


async def test_decorates_coroutine_functions() -> None:
    bulkhead = Bulkhead(max_concurrent=2)

    @bulkhead
    async def inside() -> int:
        return bulkhead.stats().running

    assert await inside() == 1


async def test_threads_and_tasks_share_one_bulkhead() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queue=1)
    thread_inside = threading.Event()
    thread_release = threading.Event()

    def thread_holds() -> None:
        with bulkhead:
            thread_inside.set()
            thread_release.wait(WAIT)

    thread = threading.Thread(target=thread_holds)
    thread.start()
    assert thread_inside.wait(WAIT)

    async def task_work() -> str:
        return "task ran"

    task = asyncio.create_task(bulkhead.acall(task_work))
    await turns_until(lambda: bulkhead.stats().queued >= 1)
    thread_release.set()  # the thread's release wakes the task from another thread
    async with asyncio.timeout(WAIT):
        assert await task == "task ran"
    thread.join(WAIT)

    # And the other way round: a task holds, a thread waits for it.
    outcome: list[str] = []
    async with bulkhead:
        waiter = threading.Thread(target=lambda: outcome.append(bulkhead.call(lambda: "thread")))
        waiter.start()
        await asyncio.to_thread(wait_until, lambda: bulkhead.stats().queued == 1)
    await asyncio.to_thread(waiter.join, WAIT)
    assert outcome == ["thread"]
    assert bulkhead.stats().running == 0


def test_a_waiter_whose_loop_closed_does_not_swallow_the_slot() -> None:
    slots = _Slots(max_concurrent=1, max_queue=2)
    assert slots.enter(_ThreadWaiter) is True
    loop = asyncio.new_event_loop()

    async def queue_in_loop() -> object:
        return slots.enter(_TaskWaiter)

    dead = loop.run_until_complete(queue_in_loop())
    loop.close()
    alive = slots.enter(_ThreadWaiter)
    assert isinstance(dead, _TaskWaiter)
    assert isinstance(alive, _ThreadWaiter)
    slots.release()  # the dead loop cannot be woken: the slot goes to the next waiter
    assert alive.granted
    assert alive.event.is_set()
    assert slots.running == 1
    assert not slots.queue


@settings(max_examples=200, deadline=None)
# The tricky interleaving, always tried: a slot is handed to a queued task,
# which is cancelled before it can resume.
@example(
    max_concurrent=1,
    max_queue=2,
    queue_timeout=None,
    steps=[("spawn", 0), ("spawn", 0), ("tick", 0), ("finish", 0), ("tick", 0), ("cancel", 0)],
)
@given(
    max_concurrent=st.integers(1, 3),
    max_queue=st.integers(0, 3),
    queue_timeout=st.sampled_from([None, 2.0]),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["spawn", "spawn", "cancel", "finish", "tick", "tick", "advance"]),
            st.integers(0, 3),
        ),
        max_size=40,
    ),
)
def test_random_interleavings_never_leak_a_slot_and_keep_fifo_order(
    max_concurrent: int, max_queue: int, queue_timeout: float | None, steps: list[tuple[str, int]]
) -> None:
    if max_queue == 0:
        queue_timeout = None

    async def scenario() -> None:
        clock = VirtualClock()
        bulkhead = Bulkhead(
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            queue_timeout=queue_timeout,
            clock=clock,
        )
        tasks: list[asyncio.Task[None]] = []
        gates: list[asyncio.Event] = []
        entered: list[int] = []
        queued: list[int] = []
        inside = 0

        async def arrive(key: int) -> None:
            # `acall` decides synchronously on arrival, so the counters just
            # before it tell whether this task will wait in the queue.
            stats = bulkhead.stats()
            if stats.running == max_concurrent and stats.queued < max_queue:
                queued.append(key)
            await bulkhead.acall(work, key)

        async def work(key: int) -> None:
            nonlocal inside
            entered.append(key)
            inside += 1
            try:
                await gates[key].wait()
            finally:
                inside -= 1

        def check() -> None:
            stats = bulkhead.stats()
            assert 0 <= inside <= stats.running <= max_concurrent
            assert 0 <= stats.queued <= max_queue
            assert stats.queued == 0 or stats.running == max_concurrent

        for action, n in steps:
            if action == "spawn":
                gates.append(asyncio.Event())
                tasks.append(asyncio.create_task(arrive(len(tasks))))
            elif action == "cancel" and (running := [t for t in tasks if not t.done()]):
                running[n % len(running)].cancel()
            elif action == "finish" and (closed := [g for g in gates if not g.is_set()]):
                closed[n % len(closed)].set()
            elif action == "advance":
                clock.advance(n / 4)
            elif action == "tick":
                # Only here does the loop run: the other steps may land between a
                # hand-over and the resumption of the task it was handed to.
                for _ in range(n % 3 + 1):
                    await asyncio.sleep(0)
            check()
        for gate in gates:
            gate.set()
        # With every gate open, each task must finish by hand-overs alone; a
        # leaked slot would leave one waiting forever.
        await turns_until(lambda: all(task.done() for task in tasks), turns=20 * len(tasks) + 10)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        rejected = sum(isinstance(o, BulkheadFullError) for o in outcomes)
        assert all(
            o is None or isinstance(o, BulkheadFullError | asyncio.CancelledError) for o in outcomes
        )
        # Waiters get their slots in arrival order. (A caller that found a
        # free slot may start before a waiter woken earlier has resumed.)
        assert queued == sorted(queued)
        assert [key for key in entered if key in queued] == [
            key for key in queued if key in entered
        ]
        assert bulkhead.stats() == BulkheadStats(
            name="bulkhead",
            max_concurrent=max_concurrent,
            max_queue=max_queue,
            running=0,
            queued=0,
            rejected=rejected,
        )

    asyncio.run(scenario())
