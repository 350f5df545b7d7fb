"""Log lines also leave as OTLP log records, received by a real OTLP/HTTP endpoint."""

from __future__ import annotations

import io

import pytest
from obs_servers import OtlpReceiver, wait_for
from prometheus_client import CollectorRegistry

import cairn.observability as obs
from cairn.observability._otlp_logs import wants_otlp_logs


def test_the_seed_event_reaches_an_otlp_endpoint_with_its_trace_context() -> None:
    with OtlpReceiver() as receiver:
        stream = io.BytesIO()
        handle = obs.setup(
            service="orders",
            otlp_endpoint=receiver.url,
            log_stream=stream,
            registry=CollectorRegistry(),
            export_delay_ms=50,
        )
        try:
            log = obs.get_logger()
            with obs.span("checkout") as span:
                log.info(
                    "purchase_completed", user_id=123, item_id="sku-9", price=9.5, currency="USD"
                )
                trace_id = f"{span.get_span_context().trace_id:032x}"
                span_id = f"{span.get_span_context().span_id:016x}"
            log.warning("no_span_here")
            assert handle.force_flush(timeout=10)
            records = wait_for(
                lambda: receiver.log_snapshot() if len(receiver.log_snapshot()) >= 2 else None,
                what="two OTLP log records",
            )
        finally:
            obs.shutdown()
    purchase = next(r for r in records if r["body"] == "purchase_completed")
    assert purchase["service"] == "orders"
    assert purchase["trace_id"] == trace_id
    assert purchase["span_id"] == span_id
    assert purchase["severity_text"] == "INFO"
    assert purchase["attributes"]["user_id"] == 123
    assert purchase["attributes"]["currency"] == "USD"
    assert purchase["attributes"]["price"] == 9.5
    lonely = next(r for r in records if r["body"] == "no_span_here")
    assert lonely["trace_id"] == ""
    assert lonely["severity_text"] == "WARNING"
    # The stdout line is still written, and carries the same trace id.
    assert trace_id.encode() in stream.getvalue()


def test_auto_exports_only_with_an_endpoint_and_respects_otel_logs_exporter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_LOGS_EXPORTER", raising=False)
    assert not wants_otlp_logs("auto", None)
    assert wants_otlp_logs("auto", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert wants_otlp_logs("auto", None)
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "none")
    assert not wants_otlp_logs("auto", None)
    assert wants_otlp_logs("otlp", None)
    assert not wants_otlp_logs("none", "http://127.0.0.1:4318")


def test_a_wrong_choice_is_refused_before_anything_is_configured() -> None:
    with pytest.raises(ValueError, match="logs_export='kafka'"):
        obs.setup(service="orders", logs_export="kafka", registry=CollectorRegistry())
    assert obs.current() is None
