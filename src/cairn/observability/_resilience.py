"""Resilience events become signals: a log line, a metric, a span event.

``cairn.resilience`` never imports this package; it emits frozen event
records and this module subscribes. Listeners run where the event happens,
so ``trace.get_current_span()`` is the span of the protected call.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from opentelemetry import trace

from cairn.observability import _logs, _runtime
from cairn.resilience import _events as ev

__all__ = ["EVENT_NAMES", "on_event"]

# Event name used for the log line's ``event`` and the span event's name.
EVENT_NAMES: dict[type[ev.Event], str] = {
    ev.RetryScheduled: "retry.scheduled",
    ev.RetryGaveUp: "retry.gave_up",
    ev.BreakerStateChanged: "breaker.state_changed",
    ev.BreakerRejected: "breaker.rejected",
    ev.BulkheadRejected: "bulkhead.rejected",
    ev.TimeoutElapsed: "timeout.elapsed",
    ev.HedgeLaunched: "hedge.launched",
    ev.FallbackUsed: "fallback.used",
}
_LEVELS: dict[type[ev.Event], str] = {
    ev.RetryGaveUp: "error",
    ev.HedgeLaunched: "info",
    ev.FallbackUsed: "warning",
}


def _name(event: ev.Event) -> str:
    name = EVENT_NAMES.get(type(event))
    if name is None:
        # An event type added after this table: still a signal, named after it.
        name = "resilience." + type(event).__name__
    return name


def _fields(event: ev.Event) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        if field.name == "at":
            continue
        value = getattr(event, field.name)
        if value is None:
            continue
        if isinstance(value, BaseException):
            fields["error.type"] = type(value).__qualname__
            fields["error.message"] = str(value)
        elif isinstance(value, enum.Enum):
            fields[field.name] = str(value.value)
        else:
            fields[field.name] = value
    return fields


def _count(metrics: Any, event: ev.Event) -> None:
    policy = event.policy
    if isinstance(event, ev.RetryScheduled):
        metrics.retry_attempts.labels(policy).inc()
    elif isinstance(event, ev.RetryGaveUp):
        metrics.retry_giveups.labels(policy, event.reason).inc()
    elif isinstance(event, ev.BreakerStateChanged):
        metrics.breaker_transitions.labels(
            policy, event.from_state.value, event.to_state.value
        ).inc()
        metrics.set_breaker_state(policy, event.to_state.value)
    elif isinstance(event, ev.BreakerRejected):
        metrics.breaker_rejections.labels(policy).inc()
    elif isinstance(event, ev.BulkheadRejected):
        metrics.bulkhead_rejections.labels(policy).inc()
    elif isinstance(event, ev.TimeoutElapsed):
        metrics.timeouts.labels(policy).inc()
    elif isinstance(event, ev.HedgeLaunched):
        metrics.hedges.labels(policy).inc()
    elif isinstance(event, ev.FallbackUsed):
        metrics.fallbacks.labels(policy).inc()


def on_event(event: ev.Event) -> None:
    """The listener ``setup()`` subscribes to ``cairn.resilience`` events."""
    runtime = _runtime.RUNTIME
    if runtime is None:
        return
    name = _name(event)
    fields = _fields(event)
    _count(runtime.resilience, event)
    span = trace.get_current_span()
    if span.is_recording():
        attributes: dict[str, str | bool | int | float] = {"cairn.policy": event.policy}
        for key, value in fields.items():
            if isinstance(value, str | bool | int | float):
                attributes[key if "." in key else f"cairn.{key}"] = value
        span.add_event(name, attributes)
    level = _LEVELS.get(type(event), "warning")
    if isinstance(event, ev.BreakerStateChanged) and event.to_state is ev.BreakerState.CLOSED:
        level = "info"
    _logs.emit(level, {"event": name, "policy": event.policy, **fields})
