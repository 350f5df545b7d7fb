"""Helpers shared by the observability tests."""

from __future__ import annotations

import io
from typing import Any

import orjson

import cairn.observability as obs


class Setup:
    def __init__(self, handle: obs.Observability, stream: io.BytesIO) -> None:
        self.handle = handle
        self.stream = stream
        self.registry = handle.registry

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)
