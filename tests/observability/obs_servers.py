"""Real servers for tests: uvicorn subprocesses on 127.0.0.1 and an OTLP receiver."""

from __future__ import annotations

import gzip
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HERE = Path(__file__).parent
T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        # Polling interval of the condition, not a wait for things to settle.
        time.sleep(0.02)


class OtlpReceiver:
    """A tiny OTLP/HTTP endpoint that decodes spans and logs with the protobuf definitions."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/logs":
                    logs = ExportLogsServiceRequest()
                    logs.ParseFromString(body)
                    receiver._add_logs(logs)
                    reply = ExportLogsServiceResponse().SerializeToString()
                else:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._add(request)
                    reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self._lock:
                        self.spans.append(
                            {
                                "service": resource.get("service.name"),
                                "instance": resource.get("service.instance.id"),
                                "name": span.name,
                                "kind": span.kind,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "attributes": {
                                    a.key: a.value.string_value or a.value.int_value
                                    for a in span.attributes
                                },
                            }
                        )

    def _add_logs(self, request: ExportLogsServiceRequest) -> None:
        for resource_logs in request.resource_logs:
            resource = {a.key: a.value.string_value for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    with self._lock:
                        self.logs.append(
                            {
                                "service": resource.get("service.name"),
                                "body": record.body.string_value,
                                "severity_text": record.severity_text,
                                "severity_number": record.severity_number,
                                "trace_id": record.trace_id.hex(),
                                "span_id": record.span_id.hex(),
                                "attributes": {
                                    a.key: a.value.string_value
                                    or a.value.int_value
                                    or a.value.double_value
                                    for a in record.attributes
                                },
                            }
                        )

    def log_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.logs)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.spans)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Server:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path

    def lines(self) -> list[dict[str, Any]]:
        import orjson

        raw_lines = self.log_path.read_bytes().splitlines()
        return [orjson.loads(raw) for raw in raw_lines if raw.startswith(b"{")]


@contextmanager
def uvicorn_server(
    factory: str, *, env: dict[str, str], log_path: Path, workers: int = 1
) -> Iterator[Server]:
    """Run ``obs_apps:<factory>`` under uvicorn on a socket bound here (no port race)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable, "-m", "uvicorn", "--factory", f"obs_apps:{factory}",
        "--app-dir", str(HERE), "--fd", str(sock.fileno()), "--no-access-log",
        "--workers", str(workers),
    ]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),)
        )
    sock.close()
    server = Server(process, url, log_path)
    try:
        wait_for(lambda: _ready(server), timeout=30, what=f"{factory} to answer")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # pragma: no cover
            process.kill()
            process.wait(timeout=15)


def _ready(server: Server) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"server exited: {server.log_path.read_text()}")
    try:
        httpx.get(server.url + "/healthz", timeout=1.0)
    except httpx.TransportError:
        return False
    return True
