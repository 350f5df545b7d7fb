"""Fixtures: a set-up cairn.observability writing to memory, torn down after."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from obs_support import Setup
from prometheus_client import CollectorRegistry

import cairn.observability as obs


@pytest.fixture
def observed() -> Iterator[Setup]:
    stream = io.BytesIO()
    handle = obs.setup(
        service="orders",
        version="1.2.3",
        instance_id="orders-1",
        log_stream=stream,
        traces="none",
        registry=CollectorRegistry(),
        log_level="debug",
    )
    try:
        yield Setup(handle, stream)
    finally:
        obs.shutdown()
