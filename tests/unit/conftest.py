"""Unit-suite settings: the hypothesis profiles of the fuzz tests (``test_fuzz_*.py``), and the fixtures
several unit modules share (``store``).

``ci``, the default: reproducible (derandomized, no example database) and quick, a few hundred examples a
test. ``deep`` (``HYPOTHESIS_PROFILE=deep``): a hundred times more, fresh randomness each run, for hunting
locally. Both bound each example's time (generously: load must not fail them), so a regular expression that
backtracks catastrophically fails.
"""

from __future__ import annotations

import os
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from mcp_server.app import build_http_app
from orchestrator.secrets import SecretBox, write_master_key
from orchestrator.settings import Settings
from orchestrator.store import Store
from tests.fakes import FakeBackend, FakeBuilder
from tests.ports import free_port

from .site import APP_IMAGE, Site

# A deadline a thousand times an example's usual time: a loaded CI machine stays far inside it (at 500 ms it
# did not), a backtracking regular expression does not. hypothesis's too_slow check times generation: off.
_UNTIMED = {"deadline": timedelta(seconds=5), "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("ci", max_examples=300, derandomize=True, database=None, **_UNTIMED)
settings.register_profile("deep", max_examples=30_000, **_UNTIMED)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh control-plane database in the test's own directory."""
    opened = await Store.open(tmp_path / "agenthost.db", SecretBox(os.urandom(32)))
    yield opened
    await opened.close()


# -- a platform over the in-memory engines, served through Starlette's TestClient --------------------------------


class _Answer(socketserver.BaseRequestHandler):
    """Answers as each readiness probe expects: HTTP (any status), Redis (AUTH + PING), Postgres (asks for auth),
    SSH (a greeting, to a client that waits for one)."""

    def handle(self) -> None:
        self.request.settimeout(0.5)
        try:
            first = self.request.recv(4096)
        except TimeoutError:  # a client that waits to be greeted first: an SSH client
            self.request.sendall(b"SSH-2.0-fake\r\n")
            return
        if first.startswith((b"GET", b"HEAD", b"POST")):
            self.request.sendall(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok")
        elif first.startswith(b"*"):
            self.request.sendall(b"+OK\r\n+PONG\r\n")
        elif first:
            self.request.sendall(b"R\0\0\0\x08\0\0\0\x03")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serving(handler: type[socketserver.BaseRequestHandler]) -> Iterator[int]:
    """A threaded TCP server on a free port of 127.0.0.1 running ``handler``, until the block ends."""
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def listener() -> Iterator[int]:
    """A local server where the fake engine's published endpoints point, answering every readiness probe."""
    with serving(_Answer) as port:
        yield port


@pytest.fixture
def app_settings(tmp_path: Path, repo_dir: Path) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    write_master_key(data / "master.key")
    return Settings(
        data_dir=data,
        image_allow=["example.test/*"],
        toolsets=["all"],  # the tests call every tool; toolsets have their own tests
        sandbox_pool_size=0,
        reconcile_interval_s=3600,  # one pass at start; tests run further passes themselves (reconcile_once)
        wait_timeout_s=5,
        ingress_drain_s=0,
        registry="",
        allow_local_git=True,  # builds from repositories in repo_dir
        build_dir=repo_dir / "builds",
        ssh_bind="127.0.0.1",  # the app's SSH gateway: this host only, on a port of its own
        ssh_port=free_port(),
    )


@pytest.fixture
def fake_backend(app_settings: Settings, listener: int, tmp_path: Path) -> FakeBackend:
    s = app_settings
    images = {APP_IMAGE, s.image_python, s.image_postgres, s.image_redis, s.image_base}
    fake = FakeBackend(images, volume_root=tmp_path / "volumes")
    fake.publish_port = listener
    return fake


@pytest.fixture
def fake_builder() -> FakeBuilder:
    return FakeBuilder()


@pytest.fixture
def site(app_settings: Settings, fake_backend: FakeBackend, fake_builder: FakeBuilder) -> Iterator[Site]:
    app = build_http_app(app_settings, backend=fake_backend, builder=fake_builder)
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        platform = app.state.agenthost.platform
        portal = client.portal
        assert portal is not None
        admin = portal.call(platform.tenants.bootstrap)
        assert admin is not None
        s = Site(client, platform, admin.key)
        made = s.call("create_tenant", key=s.admin, name="acme")
        s.key = made["key"]["key"]
        yield s
