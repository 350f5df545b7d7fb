"""The one setup call: idempotent, validated, undoable; import configures nothing."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from obs_support import Setup
from opentelemetry import trace
from prometheus_client import CollectorRegistry

import cairn.observability as obs
from cairn.observability import _runtime


def test_import_configures_nothing() -> None:
    # A fresh interpreter: nothing imported before can hide a side effect.
    code = (
        "import logging, structlog\n"
        "from opentelemetry import trace\n"
        "before = list(logging.getLogger().handlers)\n"
        "import cairn.observability\n"
        "assert logging.getLogger().handlers == before\n"
        "assert not structlog.is_configured()\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "from prometheus_client import REGISTRY\n"
        "assert REGISTRY.get_sample_value('http_requests_total', {}) is None\n"
        "assert 'active_connections' not in REGISTRY._names_to_collectors\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_setup_is_idempotent_and_refuses_a_different_configuration(observed: Setup) -> None:
    config = observed.handle._config
    again = obs.setup(
        service="orders",
        version="1.2.3",
        instance_id="orders-1",
        log_stream=config.log_stream,
        traces="none",
        registry=observed.registry,
        log_level="debug",
    )
    assert again is observed.handle
    assert obs.current() is observed.handle
    with pytest.raises(ValueError, match="shutdown"):
        obs.setup(service="inventory", traces="none", registry=observed.registry)


def test_shutdown_undoes_everything_and_setup_can_run_again() -> None:
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    registry = CollectorRegistry()
    first = obs.setup(service="a", traces="none", registry=registry, log_stream=io.BytesIO())
    assert root.handlers != handlers_before
    assert registry.get_sample_value("active_connections") == 0.0
    tracer = trace.get_tracer("user.code")
    with tracer.start_as_current_span("one") as span:
        assert span.is_recording()
    first.shutdown()
    assert root.handlers == handlers_before
    assert _runtime.RUNTIME is None
    assert registry.get_sample_value("active_connections") is None
    # The same tracer object now records into nothing, then into the new setup.
    with tracer.start_as_current_span("between") as span:
        assert not span.is_recording()
    obs.setup(service="b", traces="none", registry=registry, log_stream=io.BytesIO())
    try:
        with tracer.start_as_current_span("two") as span:
            assert span.is_recording()
            assert span.resource.attributes["service.name"] == "b"  # type: ignore[attr-defined]
    finally:
        obs.shutdown()
    obs.shutdown()  # a second shutdown is harmless


def test_resource_attributes(observed: Setup) -> None:
    attributes = observed.handle.tracer_provider.resource.attributes
    assert attributes["service.name"] == "orders"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["service.instance.id"] == "orders-1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": " "}, "service"),
        ({"service": "s", "log_level": "loud"}, "log_level"),
        ({"service": "s", "sample_ratio": 1.5}, "sample_ratio"),
        ({"service": "s", "export_delay_ms": 0}, "export_delay_ms"),
        ({"service": "s", "max_queue_size": 0}, "max_queue_size"),
        ({"service": "s", "buckets": (1.0, 0.5)}, "buckets"),
        ({"service": "s", "traces": "jaeger"}, "traces="),
        ({"service": "s", "traces": ""}, "traces="),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        obs.setup(registry=CollectorRegistry(), log_stream=io.BytesIO(), **kwargs)  # type: ignore[arg-type]
    assert obs.current() is None


def test_exporter_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.zipkin.json import ZipkinExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    from cairn.observability._tracing import build_exporters

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert build_exporters("auto", otlp_endpoint=None, zipkin_endpoint=None) == []
    (explicit,) = build_exporters("auto", otlp_endpoint="http://127.0.0.1:1/", zipkin_endpoint=None)
    assert isinstance(explicit, OTLPSpanExporter)
    assert explicit._endpoint == "http://127.0.0.1:1/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:2")
    (from_env,) = build_exporters("auto", otlp_endpoint=None, zipkin_endpoint=None)
    assert from_env._endpoint == "http://127.0.0.1:2/v1/traces"  # type: ignore[attr-defined]
    kinds = build_exporters("console, zipkin,none", otlp_endpoint=None, zipkin_endpoint=None)
    assert [type(e) for e in kinds] == [ConsoleSpanExporter, ZipkinExporter]
    for exporter in (explicit, from_env, *kinds):
        exporter.shutdown()
