"""Routes through a real Caddy (Debian's package), programmed by the platform over its admin socket, with the
in-memory engine behind it: its published endpoints are the ``listener`` fixture, which answers "ok" (or a
streaming upstream, for server-sent events and WebSockets). The same through Docker, with tenants, restarts
and a workload probing the admin API, is tests/e2e/test_ingress.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from orchestrator.ingress import caddy_command
from orchestrator.secrets import write_master_key
from orchestrator.settings import Settings
from tests.fakes import FakeBackend
from tests.ports import free_port

from .site import APP_IMAGE, Site

pytestmark = pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy is not installed (apt-get install caddy)")


@pytest.fixture
def app_settings(tmp_path: Path, repo_dir: Path) -> Iterator[Settings]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    write_master_key(data / "master.key")
    short = Path(tempfile.mkdtemp(prefix="ah-"))  # a unix socket's path must stay under 108 bytes
    yield Settings(
        data_dir=data,
        image_allow=["example.test/*"],
        toolsets=["all"],
        sandbox_pool_size=0,
        reconcile_interval_s=3600,
        wait_timeout_s=5,
        registry="",
        build_dir=repo_dir / "builds",
        base_domain="ingress.localhost",
        ingress_internal_ca=True,
        ingress_bind="127.0.0.1",
        ingress_https_port=free_port(),
        ingress_http_port=free_port(),
        ingress_admin_socket=short / "admin.sock",
    )
    shutil.rmtree(short, ignore_errors=True)


async def _get(settings: Settings, host: str) -> tuple[int, str]:
    ca = settings.ingress_dir / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), timeout=5) as client:
        response = await client.get(
            f"https://127.0.0.1:{settings.ingress_https_port}/",
            headers={"Host": host},
            extensions={"sni_hostname": host},
        )
    return response.status_code, response.text


@pytest.fixture
def caddy(site: Site, app_settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """Caddy on its first configuration, as `agenthost ingress run` starts it, serving HTTPS."""
    argv, env = caddy_command(app_settings, site.platform.ingress.render([]))
    log = app_settings.ingress_dir / "caddy.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)

    async def serving() -> None:
        with anyio.fail_after(20):
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if (await _get(app_settings, "nobody-nowhere.ingress.localhost"))[0] == 404:
                        return
                except (httpx.HTTPError, ssl.SSLError, FileNotFoundError):
                    await anyio.sleep(0.05)  # the internal CA and the wildcard certificate are being made

    try:
        site.run(serving)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_route_follows_its_service_through_a_real_caddy(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes]
) -> None:
    host = "web-acme.ingress.localhost"
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert svc["url"] == f"https://{host}:{app_settings.ingress_https_port}"
    assert site.run(_get, app_settings, host) == (200, "ok")
    site.call("stop_service", service="web")
    status, page = site.run(_get, app_settings, host)
    assert status == 503 and "stopped" in page, page
    site.call("start_service", service="web")
    assert site.run(_get, app_settings, host) == (200, "ok")
    site.call("delete_service", service="web", confirm=True)
    status, page = site.run(_get, app_settings, host)
    assert status == 404 and "No service answers" in page, page


def test_a_caddy_that_lost_its_configuration_is_healed_by_the_next_reconciler_pass(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes]
) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    empty = site.platform.ingress.render([])
    site.run(site.platform.ingress.admin.load, empty)  # a Caddy restarted on an old config, or changed by hand
    assert site.run(_get, app_settings, "web-acme.ingress.localhost")[0] == 404
    counts = site.run(site.platform.reconciler.reconcile_once)
    assert counts["routes"] == 1 and counts["passes_failed"] == 0, counts
    assert site.run(_get, app_settings, "web-acme.ingress.localhost") == (200, "ok")


class _Streamer(socketserver.BaseRequestHandler):
    """An upstream that streams: server-sent events (one event, then it holds the line until told to stop), and
    a WebSocket-style upgrade that echoes what it gets, and a slow answer."""

    release = threading.Event()
    arrived = threading.Event()

    def handle(self) -> None:
        request = self.request.recv(65536)
        if request.startswith(b"GET /slow "):  # answers once released
            self.arrived.set()
            self.release.wait(10)
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            return
        if b"upgrade: websocket" in request.lower():
            self.request.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            self.request.sendall(self.request.recv(1024))
            return
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
        self.request.sendall(b"data: first\n\n")
        self.release.wait(10)


@pytest.fixture
def streamer() -> Iterator[int]:
    _Streamer.release.clear()
    _Streamer.arrived.clear()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Streamer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server_address[1]
    _Streamer.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


def test_server_sent_events_and_websockets_pass_through(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes], fake_backend: FakeBackend, streamer: int
) -> None:
    fake_backend.publish_port = streamer
    site.call("deploy_service", name="live", image=APP_IMAGE, port=8000, health_check={"type": "none"})
    host = "live-acme.ingress.localhost"
    ca = app_settings.ingress_dir / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    context = ssl.create_default_context(cafile=str(ca))

    async def first_event() -> str:
        with anyio.fail_after(5):  # a buffering proxy would hold the event until the stream ends
            async with httpx.AsyncClient(verify=context) as client:
                url = f"https://127.0.0.1:{app_settings.ingress_https_port}/events"
                headers = {"Host": host, "Accept": "text/event-stream"}
                async with client.stream("GET", url, headers=headers, extensions={"sni_hostname": host}) as response:
                    async for line in response.aiter_lines():
                        if line:
                            return line
        return ""

    assert site.run(first_event) == "data: first"

    with socket.create_connection(("127.0.0.1", app_settings.ingress_https_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            tls.sendall(
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += tls.recv(4096)
            assert answer.startswith(b"HTTP/1.1 101"), answer
            tls.sendall(b"echo me")
            assert tls.recv(1024) == b"echo me"


async def _send(settings: Settings, host: str, sni: str, method: str = "GET") -> int:
    ca = settings.ingress_dir / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), timeout=5) as client:
        response = await client.request(
            method,
            f"https://127.0.0.1:{settings.ingress_https_port}/",
            headers={"Host": host},
            extensions={"sni_hostname": sni},
        )
    return response.status_code


def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    """Caddy writes an entry as a request ends, a moment after the client may have its answer: wait, bounded."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def test_attack_a_tenants_counters_hold_only_what_reached_its_own_routes(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes]
) -> None:
    rival = site.call("create_tenant", key=site.admin, name="rival")["key"]["key"]
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    site.call("deploy_service", key=rival, name="web", image=APP_IMAGE, port=8000)
    mine, theirs = "web-acme.ingress.localhost", "web-rival.ingress.localhost"
    port = app_settings.ingress_https_port
    sent = [
        (mine, mine, 200),
        (f"{mine}:{port}", mine, 200),  # as a client on a port other than 443 sends it
        (mine, mine, 200),
        # The rival's host in Host, under the attacker's own TLS name: Caddy routes by Host, so these really
        # reach the rival's service, and count there, not for the attacker.
        (theirs, mine, 200),
        (f"{theirs}:{port}", mine, 200),
        # Names near the rival's that no route matches: the 404 page, counted for nobody.
        (f"{theirs}.", mine, 404),
        (f"x{theirs}", mine, 404),
        (f"{theirs}.evil.example", mine, 404),
    ]
    for host, sni, status in sent:
        assert site.run(_send, app_settings, host, sni) == status, host

    def counted(key: str | None, want: int) -> bool:
        traffic = site.call("get_service", key=key, service="web")["traffic"]
        return bool(traffic["requests"] == want)

    _eventually(lambda: counted(None, 3) and counted(rival, 2), "Caddy to log the requests")
    for key, want in ((None, 3), (rival, 2)):
        traffic = site.call("get_service", key=key, service="web")["traffic"]
        assert (traffic["requests"], traffic["errors_5xx"], traffic["window_s"]) == (want, 0, 300), traffic
        assert traffic["p50_ms"] > 0, traffic
    assert site.call("list_services")["services"][0].get("traffic") is None  # counters are get_service's
    access = app_settings.ingress_dir / "access"
    assert len(list(access.iterdir())) == 2 and access.stat().st_mode & 0o077 == 0
    for path in access.iterdir():  # the time, status and duration, no client address, path or header
        assert {tuple(sorted(json.loads(line))) for line in path.read_text().splitlines()} == {
            ("duration", "status", "ts")
        }


def test_a_stopped_services_503_page_counts_as_its_5xx(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes]
) -> None:
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    host = "web-acme.ingress.localhost"
    assert site.run(_send, app_settings, host, host) == 200
    site.call("stop_service", service="web")
    assert [site.run(_send, app_settings, host, host) for _ in range(2)] == [503, 503]

    def traffic() -> dict[str, Any]:
        return site.call("get_service", service="web")["traffic"]  # type: ignore[no-any-return]

    _eventually(lambda: traffic()["requests"] == 3, "Caddy to log the requests")
    assert traffic()["errors_5xx"] == 2
    site.call("delete_service", service="web", confirm=True)
    access = app_settings.ingress_dir / "access"
    for path in access.iterdir():  # a minute on: the reconciler leaves a file written just now alone
        os.utime(path, (time.time() - 120, time.time() - 120))
    site.run(site.platform.reconciler.reconcile_once)
    assert list(access.iterdir()) == []  # a deleted service's log goes too


def test_a_reload_lets_the_requests_in_flight_finish(
    site: Site, app_settings: Settings, caddy: subprocess.Popen[bytes], fake_backend: FakeBackend, streamer: int
) -> None:
    """Every change of any service loads a new configuration; a request another service was answering goes on."""
    fake_backend.publish_port = streamer
    site.call("deploy_service", name="slow", image=APP_IMAGE, port=8000, health_check={"type": "none"})
    host = "slow-acme.ingress.localhost"
    ca = app_settings.ingress_dir / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    answer: list[tuple[int, str]] = []

    async def slow_request() -> None:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca)), timeout=10) as client:
            url = f"https://127.0.0.1:{app_settings.ingress_https_port}/slow"
            response = await client.get(url, headers={"Host": host}, extensions={"sni_hostname": host})
            answer.append((response.status_code, response.text))

    thread = threading.Thread(target=site.run, args=(slow_request,))
    thread.start()
    assert _Streamer.arrived.wait(10)
    loaded = site.run(site.platform.ingress.admin.config)
    site.call("deploy_service", name="other", image=APP_IMAGE, port=8000, health_check={"type": "none"})
    assert site.run(site.platform.ingress.admin.config) != loaded  # Caddy runs a new configuration
    _Streamer.release.set()
    thread.join(15)
    assert answer == [(200, "done")]
