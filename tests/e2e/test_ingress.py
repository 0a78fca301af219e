"""The HTTPS proxy, as a tenant and a web client see it: a real Caddy (`agenthost ingress run`) on ports of
its own on 127.0.0.1, programmed by the platform over its admin socket; requests carry the route's host
name in SNI and Host and go to 127.0.0.1 (no DNS), trusting Caddy's internal CA from the data dir."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import anyio
import docker
import httpx
import pytest

from .harness import EGRESS_PROBE, VENV_BIN, ToolFailed, call, connect, probe_results, untrusted_body
from .nomad_agent import NOMAD_DEV_SIZES, purge_tenants
from .proxy import DOMAIN, Ingress, running_ingress

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


@pytest.fixture(scope="module")
def ingress(docker_client: object, hello_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    with running_ingress(tmp_path_factory) as proxy:
        yield proxy


async def test_a_service_answers_at_its_https_address_through_its_lifecycle(ingress: Ingress, hello_image: str) -> None:
    async with connect(ingress.host, ingress.host.tenant("acme"), "stdio") as client:
        svc = await call(
            client, "deploy_service", {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "web"}}
        )
        url = ingress.url("web", "acme")
        assert svc["status"] == "running" and svc["url"] == url, svc
        assert svc["internal_url"].startswith("http://127.0.0.1:")  # the host port
        assert ingress.get(url) == (200, "hello web")

        await call(client, "restart_service", {"service": "web"})
        assert ingress.get(url) == (200, "hello web")
        await call(client, "update_service", {"service": "web", "env": {"GREETING": "updated"}})
        assert ingress.get(url) == (200, "hello updated")  # a recreated container, maybe on a new host port

        stopped = await call(client, "stop_service", {"service": "web"})
        assert stopped["url"] == url
        status, page = ingress.get(url)
        assert status == 503 and "web" in page and "stopped" in page, page

        await call(client, "start_service", {"service": "web"})
        assert ingress.get(url) == (200, "hello updated")

        await call(client, "delete_service", {"service": "web", "confirm": True})
        status, page = ingress.get(url)
        assert status == 404 and "No service answers" in page, page


async def test_http_redirects_to_https(ingress: Ingress) -> None:
    http_port = ingress.host.settings.ingress_http_port
    response = httpx.get(f"http://127.0.0.1:{http_port}/path?q=1", headers={"Host": f"web-acme.{DOMAIN}"}, timeout=10)
    assert response.status_code == 308
    assert response.headers["location"] == f"https://web-acme.{DOMAIN}:{ingress.https_port}/path?q=1"


async def test_tenants_reach_only_their_own_services(ingress: Ingress, hello_image: str) -> None:
    async with (
        connect(ingress.host, ingress.host.tenant("first"), "stdio") as first,
        connect(ingress.host, ingress.host.tenant("second"), "stdio") as second,
    ):
        await call(
            first, "deploy_service", {"name": "app", "image": hello_image, "port": 8000, "env": {"GREETING": "1"}}
        )
        assert ingress.get(ingress.url("app", "first")) == (200, "hello 1")
        assert ingress.get(ingress.url("app", "second"))[0] == 404  # the same name, another tenant: no route

        await call(
            second, "deploy_service", {"name": "app", "image": hello_image, "port": 8000, "env": {"GREETING": "2"}}
        )
        assert ingress.get(ingress.url("app", "second")) == (200, "hello 2")
        assert ingress.get(ingress.url("app", "first")) == (200, "hello 1")

        private = await call(
            second, "deploy_service", {"name": "hidden", "image": hello_image, "port": 8000, "public": False}
        )
        assert private["url"] is None and private["public"] is False
        assert ingress.get(ingress.url("hidden", "second"))[0] == 404
        for client, name in ((first, "app"), (second, "app"), (second, "hidden")):
            await call(client, "delete_service", {"service": name, "confirm": True})


async def test_a_restarted_caddy_serves_every_route_at_once(ingress: Ingress, hello_image: str) -> None:
    async with connect(ingress.host, ingress.host.tenant("acme"), "stdio") as client:
        await call(client, "deploy_service", {"name": "kept", "image": hello_image, "port": 8000})
        ingress.stop_caddy()
        ingress.start_caddy()  # its first configuration is rendered from the data dir
        assert ingress.get(ingress.url("kept", "acme")) == (200, "hello world")
        await call(client, "delete_service", {"service": "kept", "confirm": True})


async def test_attack_workload_reaches_caddys_admin_api(ingress: Ingress, hello_image: str) -> None:
    socket_path = ingress.host.settings.ingress_socket
    probe = (
        f"import os; print('socket', 'present' if os.path.exists({str(socket_path)!r}) else 'absent', flush=True)\n"
        + EGRESS_PROBE
    )
    targets = ["admin-tcp=gateway:2019", f"https=gateway:{ingress.https_port}"]
    async with connect(ingress.host, ingress.host.tenant("attacker"), "stdio") as client:
        await call(client, "deploy_service", {"name": "prober", "image": hello_image, "port": 8000})
        run = await call(
            client, "exec", {"service": "prober", "command": ["python3", "-c", probe, *targets], "timeout_s": 60}
        )
        out = untrusted_body(run["stdout"])
        assert "socket absent" in out, out
        results = probe_results(out)
        assert set(results) == {"admin-tcp", "https"}, out
        assert all(r.startswith("blocked") for r in results.values()), out
        await call(client, "delete_service", {"service": "prober", "confirm": True})
    # And on the host, Caddy's admin API is the unix socket only: no TCP port answers.
    with socket.socket() as conn, pytest.raises(ConnectionRefusedError):
        conn.connect(("127.0.0.1", 2019))


@dataclass
class Load:
    """GETs through the proxy, one after another on fresh connections, until stopped: what a user sees."""

    ingress: Ingress
    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[int, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            try:
                answer = self.ingress.get(self.url)
            except (httpx.HTTPError, ssl.SSLError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.answers.append(answer)
            if answer[0] != 200:
                self.failures.append(f"{answer[0]}: {answer[1][:200]}")
        self.seconds = time.monotonic() - started

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Load]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.to_thread.run_sync, self.run)
            try:
                yield self
            finally:
                self.stop.set()

    def bodies(self) -> list[str]:
        """The distinct bodies of the 200 answers, in the order they first appeared."""
        return list(dict.fromkeys(body for status, body in self.answers if status == 200))


async def test_updates_and_env_changes_never_drop_a_request(
    ingress: Ingress, hello_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with connect(ingress.host, ingress.host.tenant("acme"), "stdio") as client:
        args = {"name": "steady", "image": hello_image, "port": 8000, "env": {"GREETING": "v1"}}
        first = await call(client, "deploy_service", args)
        url = ingress.url("steady", "acme")
        async with Load(ingress, url).running() as load:
            await call(client, "update_service", {"service": "steady", "env": {"GREETING": "v2"}})
            await call(client, "set_env", {"service": "steady", "vars": {"GREETING": "v3"}})
            assert ingress.get(url) == (200, "hello v3")
        with capsys.disabled():
            sys.stdout.write(
                f"\nload during update_service + set_env: {len(load.answers)} answers, {len(load.failures)} failed"
                f" {sorted({f.split(':')[0] for f in load.failures})}, {load.seconds:.1f} s\n"
            )
        # Recreating the container in place failed every request for a second or more (hundreds here); each
        # switch also reloads Caddy, which must neither cut a request in flight nor reset a new connection.
        assert load.failures == [], (load.failures[:5], ingress.log_tail())
        assert load.bodies() == ["hello v1", "hello v2", "hello v3"]  # it spanned both switches
        svc = await call(client, "get_service", {"service": "steady"})
        assert svc["id"] == first["id"] and svc["status"] == "running" and svc["restarts"] == 0
        await call(client, "delete_service", {"service": "steady", "confirm": True})


async def test_a_broken_update_leaves_the_old_version_serving(
    ingress: Ingress, hello_image: str, docker_client: docker.DockerClient
) -> None:
    async with connect(ingress.host, ingress.host.tenant("acme"), "stdio") as client:
        svc = await call(client, "deploy_service", {"name": "kept", "image": hello_image, "port": 8000})
        url = ingress.url("kept", "acme")
        crash = ["python3", "-c", "import sys; print('new version: bad config', flush=True); sys.exit(3)"]
        async with Load(ingress, url).running() as load:
            with pytest.raises(ToolFailed) as refused:
                await call(client, "update_service", {"service": "kept", "command": crash})
        assert refused.value.code == "workload_failed"
        assert "exited with code 3" in refused.value.message and "new version: bad config" in refused.value.message
        assert load.failures == [], (load.failures[:5], ingress.log_tail())
        assert load.bodies() == ["hello world"], load.bodies()  # the broken version never answered
        after = await call(client, "get_service", {"service": "kept"})
        assert after["status"] == "running" and after["command"] is None
        names = [c.name for c in docker_client.containers.list(ignore_removed=True, all=True) if svc["id"] in c.name]
        assert names == [f"ah-{svc['id']}"], names  # the new version's container is gone
        await call(client, "delete_service", {"service": "kept", "confirm": True})


def _send(ingress: Ingress, host: str, sni: str, method: str = "GET") -> int:
    """One request through the proxy with ``host`` in the Host header and ``sni`` as the TLS name."""
    context = ssl.create_default_context(cafile=str(ingress.ca))
    with httpx.Client(verify=context, timeout=10) as client:
        response = client.request(
            method, f"https://127.0.0.1:{ingress.https_port}/", headers={"Host": host}, extensions={"sni_hostname": sni}
        )
    return response.status_code


async def _counted(client: object, service: str, requests: int) -> dict[str, object]:
    """get_service's traffic once it holds ``requests`` requests: Caddy logs a request as it ends, a moment
    after the client may have read the answer (bounded wait)."""
    with anyio.fail_after(15):
        while (traffic := (await call(client, "get_service", {"service": service}))["traffic"])["requests"] < requests:
            await anyio.sleep(0.1)
    return traffic  # type: ignore[no-any-return]


async def test_get_service_counts_the_requests_that_reached_the_service(ingress: Ingress, hello_image: str) -> None:
    async with connect(ingress.host, ingress.host.tenant("counted"), "stdio") as client:
        await call(client, "deploy_service", {"name": "busy", "image": hello_image, "port": 8000})
        fresh = await call(client, "get_service", {"service": "busy"})
        assert fresh["traffic"]["requests"] == 0 and fresh["traffic"]["p50_ms"] is None, fresh
        host = f"busy-counted.{DOMAIN}"
        assert [_send(ingress, host, host) for _ in range(5)] == [200] * 5
        assert [_send(ingress, f"{host}:{ingress.https_port}", host, "POST") for _ in range(2)] == [
            501
        ] * 2  # the app's
        await call(client, "stop_service", {"service": "busy"})
        assert [_send(ingress, host, host) for _ in range(3)] == [503] * 3  # the proxy's page: it is stopped
        traffic = await _counted(client, "busy", 10)
        assert traffic["requests"] == 10 and traffic["errors_5xx"] == 5 and traffic["window_s"] == 300, traffic
        assert isinstance(traffic["p50_ms"], float) and traffic["p50_ms"] > 0, traffic
        listed = await call(client, "list_services", {})
        assert "traffic" not in listed["services"][0]  # the counters read Caddy's logs: get_service only
        await call(client, "delete_service", {"service": "busy", "confirm": True})


async def test_attack_traffic_never_counts_for_a_service_it_did_not_reach(ingress: Ingress, hello_image: str) -> None:
    async with (
        connect(ingress.host, ingress.host.tenant("alpha"), "stdio") as alpha,
        connect(ingress.host, ingress.host.tenant("beta"), "stdio") as beta,
    ):
        for client in (alpha, beta):
            await call(client, "deploy_service", {"name": "app", "image": hello_image, "port": 8000})
        mine, theirs = f"app-alpha.{DOMAIN}", f"app-beta.{DOMAIN}"
        assert [_send(ingress, mine, mine) for _ in range(4)] == [200] * 4
        # Host names near the other tenant's that no route matches, and a host nobody routes: the 404 page, which
        # counts for nobody.
        for near in (f"{theirs}.", f"x{theirs}", f"{theirs}.evil.example", f"app-gamma.{DOMAIN}"):
            assert _send(ingress, near, mine) == 404, near
        # The other tenant's name in Host under the attacker's own TLS name: Caddy routes by Host, so these do
        # reach the other service (and its app answers them); they count there, and only there.
        assert [_send(ingress, theirs, mine) for _ in range(2)] == [200] * 2
        assert (await _counted(alpha, "app", 4))["requests"] == 4
        assert (await _counted(beta, "app", 2))["requests"] == 2
        for client in (alpha, beta):
            await call(client, "delete_service", {"service": "app", "confirm": True})


async def test_on_nomad_a_route_follows_the_allocation(
    nomad_agent: str, hello_image: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    env = {**NOMAD_DEV_SIZES, "AGENTHOST_BACKEND": "nomad", "AGENTHOST_NOMAD_ADDR": nomad_agent}
    with running_ingress(tmp_path_factory, env) as ingress:
        try:
            async with connect(ingress.host, ingress.host.tenant("acme"), "stdio") as client:
                args = {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "nomad"}}
                await call(client, "deploy_service", args)
                url = ingress.url("web", "acme")
                assert ingress.get(url) == (200, "hello nomad")
                await call(client, "restart_service", {"service": "web"})
                assert ingress.get(url) == (200, "hello nomad")
                await call(client, "update_service", {"service": "web", "env": {"GREETING": "moved"}})
                assert ingress.get(url) == (200, "hello moved")
                await call(client, "stop_service", {"service": "web"})
                assert ingress.get(url)[0] == 503
                await call(client, "delete_service", {"service": "web", "confirm": True})
                assert ingress.get(url)[0] == 404
        finally:
            purge_tenants(ingress.host)


async def test_attack_the_proxy_leads_nowhere_but_routed_services(ingress: Ingress, hello_image: str) -> None:
    """Host names and SNI chosen to reach what is not a routed service: the control plane's HTTP API, the
    registry, Caddy's admin endpoint, the host itself, another tenant's private service."""
    control_plane = httpx.URL(ingress.host.url)
    async with connect(ingress.host, ingress.host.tenant("victim"), "stdio") as client:
        await call(client, "deploy_service", {"name": "secret", "image": hello_image, "port": 8000, "public": False})
        hosts = [
            f"127.0.0.1:{control_plane.port}",
            "127.0.0.1:5000",  # the registry builds are pushed to
            "localhost",
            "127.0.0.1",
            "[::1]",
            "agenthost-ingress",  # the admin endpoint's origin
            f"secret-victim.{DOMAIN}",  # a private service's would-be name
            f"*.{DOMAIN}",
            f"{DOMAIN}",
        ]
        with httpx.Client(verify=ssl.create_default_context(cafile=str(ingress.ca)), timeout=10) as web:
            for host in hosts:
                response = web.get(
                    f"https://127.0.0.1:{ingress.https_port}/config/",
                    headers={"Host": host},
                    extensions={"sni_hostname": f"nobody-nowhere.{DOMAIN}"},
                )
                assert response.status_code == 404 and "No service answers" in response.text, (host, response.text)
        await call(client, "delete_service", {"service": "secret", "confirm": True})


async def test_doctor_checks_the_proxy(ingress: Ingress) -> None:
    doctor = subprocess.run(
        [str(VENV_BIN / "agenthost"), "doctor"],
        env=ingress.host.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = doctor.stdout.splitlines()
    assert f"ok   Caddy answers on {ingress.host.settings.ingress_socket} with agenthost's routes" in lines, (
        doctor.stdout
    )
    assert "ok   net.ipv4.tcp_migrate_req=1: a Caddy reload resets no client" in lines, doctor.stdout
    assert any(line.startswith(("ok   sysbox-runc", "warn sysbox-runc")) for line in lines), doctor.stdout  # optional
    assert doctor.returncode == 0, doctor.stdout
