"""Readiness of a published endpoint, against real sockets on 127.0.0.1."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from orchestrator.models import HealthCheck
from orchestrator.services.readiness import endpoint_answers

pytestmark = pytest.mark.anyio


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_any_http_answer_is_ready_and_a_closed_port_is_not(http_port: int) -> None:
    assert await endpoint_answers("127.0.0.1", http_port, HealthCheck(type="http", path="/health"))
    assert not await endpoint_answers("127.0.0.1", _closed_port(), HealthCheck(type="http"))


async def test_a_proxy_in_the_environment_is_not_used(http_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert await endpoint_answers("127.0.0.1", http_port, HealthCheck(type="http"))
