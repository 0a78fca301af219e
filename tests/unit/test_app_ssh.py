"""SSH access over the in-memory engine: keys that never touch the workload, ssh_info, and the app's SSH
gateway with a real SSH client (asyncssh): who gets in, what a session runs, revocation, limits, records."""

from __future__ import annotations

import socketserver
from collections.abc import Iterator
from typing import Any

import anyio
import asyncssh
import pytest

from tests.fakes import FakeBackend

from .conftest import serving
from .site import APP_IMAGE, Site


def _key(comment: str = "") -> tuple[asyncssh.SSHKey, str]:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment or None)
    return key, key.export_public_key().decode()


async def _connect(site: Site, user: str, key: asyncssh.SSHKey) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        "127.0.0.1",
        port=site.platform.settings.ssh_port,
        username=user,
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
        preferred_auth="publickey",
    )


def _run(site: Site, user: str, key: asyncssh.SSHKey, command: str, stdin: str | None = None) -> Any:
    async def go() -> Any:
        async with await _connect(site, user, key) as conn:
            return await conn.run(command, input=stdin, timeout=10)

    return site.run(go)


def test_keys_come_and_go_without_touching_the_workload(site: Site, fake_backend: FakeBackend) -> None:
    _, first = _key("laptop")
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=first)
    assert svc["status"] == "running", svc
    started = fake_backend.workloads[svc["id"]].started_at
    info = site.call("ssh_info", service="web")
    port = site.platform.settings.ssh_port
    assert info["ready"] is True and info["user"] == "web.acme" and info["port"] == port, info
    assert info["command"] == f"ssh -p {port} web.acme@127.0.0.1"
    assert info["known_hosts_line"].startswith(f"[127.0.0.1]:{port} ssh-ed25519 ")
    assert [k["comment"] for k in info["authorized_keys"]] == ["laptop"]
    _, second = _key("ci")
    added = site.call("add_ssh_key", service="web", public_key=second)
    assert {k["comment"] for k in added["authorized_keys"]} == {"laptop", "ci"}, added
    assert added["host_key_fingerprint"] == info["host_key_fingerprint"]
    site.call("add_ssh_key", service="web", public_key=second, remove=True)
    closed = site.call("add_ssh_key", service="web", public_key=first, remove=True)
    assert closed["authorized_keys"] == [] and "closed" in closed["note"], closed
    assert site.call("ssh_info", service="web")["error"]["code"] == "invalid_input"
    assert fake_backend.workloads[svc["id"]].started_at == started
    assert [w.kind for w in fake_backend.running()] == ["service"]


def test_a_bad_key_is_refused_and_nothing_starts(site: Site, fake_backend: FakeBackend) -> None:
    bad = site.call("deploy_service", name="web", image=APP_IMAGE, ssh_public_key="ssh-rsa AAAA not-a-key")
    assert bad["error"]["code"] == "invalid_input", bad
    assert not fake_backend.workloads
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000)
    assert site.call("add_ssh_key", service="web", public_key="nonsense")["error"]["code"] == "invalid_input"
    assert site.call("ssh_info", service="nope")["error"]["code"] == "not_found"


def test_a_session_runs_in_the_workload_and_is_recorded(site: Site) -> None:
    key, public = _key("laptop")
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    done = _run(site, "web.acme", key, "cat", stdin="from-stdin")
    assert (done.exit_status, done.stdout) == (0, "from-stdin")
    assert _run(site, "web.acme", key, "exit 7").exit_status == 7
    events = site.call("list_events", kind="service")["events"]
    sessions = [e for e in events if e["type"] == "ssh_session"]
    assert len(sessions) == 2 and {e["exit_code"] for e in sessions} == {0, 7}, sessions
    assert key.get_fingerprint("sha256") in sessions[0]["cause"]
    audit = site.call("list_audit", key=site.admin, tenant="acme")["entries"]
    rows = [a for a in audit if a["action"] == "ssh_session"]
    assert {r["outcome"] for r in rows} == {"exit 0", "exit 7"}, rows
    assert rows[0]["key_id"] == f"ssh:{key.get_fingerprint('sha256')}" and rows[0]["target"] == "service web"


def test_refusals_are_alike_whatever_the_reason(site: Site) -> None:
    alice, alice_pub = _key()
    bob, bob_pub = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=alice_pub)
    other = site.call("create_tenant", key=site.admin, name="other")["key"]["key"]
    site.call("deploy_service", key=other, name="web", image=APP_IMAGE, port=8000, ssh_public_key=bob_pub)
    site.call("deploy_service", name="stopped", image=APP_IMAGE, port=8000, ssh_public_key=alice_pub)
    site.call("stop_service", service="stopped")
    assert _run(site, "web.other", bob, "true").exit_status == 0
    for user, key in [
        ("web.acme", bob),  # another tenant's key
        ("web.other", alice),
        ("nope.acme", alice),  # no such service
        ("web.nope", alice),  # no such tenant
        ("stopped.acme", alice),  # a stopped service
        ("root", alice),
        ("WEB.acme", alice),
        ("web.acme.", alice),
    ]:
        with pytest.raises(asyncssh.PermissionDenied):
            _run(site, user, key, "true")


def test_revoking_a_key_closes_its_open_connection(site: Site) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    me = _principal(site)

    async def held_open() -> None:
        async with await _connect(site, "web.acme", key) as conn:
            await conn.create_process("cat")  # waits for stdin that never ends
            with anyio.fail_after(10):
                await site.platform.ssh.remove_key(me, "service", "web", key.get_fingerprint("sha256"))
                await conn.wait_closed()

    site.run(held_open)
    with pytest.raises(asyncssh.PermissionDenied):
        _run(site, "web.acme", key, "true")
    audit = site.call("list_audit", key=site.admin, tenant="acme")["entries"]
    assert any(a["action"] == "ssh_session" and "revoked" in a["outcome"] for a in audit), audit


def test_sessions_per_service_are_limited(site: Site) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    limit = site.platform.settings.ssh_max_sessions_per_target

    async def fill() -> str:
        async with await _connect(site, "web.acme", key) as conn:
            for _ in range(limit):
                await conn.create_process("cat")
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.create_process("cat")
            return refused.value.reason

    assert "SSH sessions open already" in site.run(fill)


def _principal(site: Site) -> Any:
    async def who() -> Any:
        return await site.platform.tenants.authenticate(site.key)

    return site.run(who)


def test_an_idle_connection_is_closed(site: Site) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    site.platform.settings.ssh_idle_timeout_s = 0.5

    async def idle() -> None:
        async with await _connect(site, "web.acme", key) as conn:
            await conn.create_process("cat")  # no traffic either way
            with anyio.fail_after(10):
                await conn.wait_closed()

    site.run(idle)
    audit = site.call("list_audit", key=site.admin, tenant="acme")["entries"]
    assert any(a["action"] == "ssh_session" and "idle" in a["outcome"] for a in audit), audit


def test_forwarding_reaches_the_service_and_the_tenants_databases_only(site: Site) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    site.call("deploy_service", name="other-web", image=APP_IMAGE, port=8000)
    assert site.call("create_database", name="cache", engine="redis")["status"] == "running"
    other = site.call("create_tenant", key=site.admin, name="other")["key"]["key"]
    assert site.call("create_database", key=other, name="theirs", engine="redis")["status"] == "running"

    async def forwards() -> tuple[list[bytes], list[str]]:
        reached, refused = [], []
        async with await _connect(site, "web.acme", key) as conn:
            for host, port in [("localhost", 8000), ("web", 8000), ("cache", 6379)]:
                reader, writer = await conn.open_connection(host, port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n" if port == 8000 else b"*1\r\n$4\r\nPING\r\n")
                reached.append(await reader.read(100))
                writer.close()
            for host, port in [
                ("localhost", 22),  # not the service's port
                ("other-web", 8000),  # another service of the tenant
                ("theirs", 6379),  # another tenant's database
                ("cache", 8000),
                ("127.0.0.2", 8000),
                ("10.0.0.1", 8000),
                ("169.254.169.254", 80),
            ]:
                with pytest.raises(asyncssh.ChannelOpenError) as err:
                    await conn.open_connection(host, port)
                refused.append(err.value.reason)
        return reached, refused

    reached, refused = site.run(forwards)
    assert [r[:15] for r in reached] == [b"HTTP/1.0 200 OK", b"HTTP/1.0 200 OK", b"+OK\r\n+PONG\r\n"], reached
    assert len(set(refused)) == 1 and "only the service's own port" in refused[0], refused


def test_a_terminal_and_its_size_changes_reach_the_backend(site: Site, fake_backend: FakeBackend) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)

    async def resized() -> Any:
        async with await _connect(site, "web.acme", key) as conn:
            proc = await conn.create_process("cat", term_type="xterm-256color", term_size=(80, 24))
            proc.change_terminal_size(132, 43)
            proc.stdin.write("typed")
            proc.stdin.write_eof()
            return await proc.wait(timeout=10)

    done = site.run(resized)
    assert (done.exit_status, done.stdout) == (0, "typed")
    assert fake_backend.sizes == [(132, 43)]


def test_a_sandbox_takes_keys_of_its_own(site: Site) -> None:
    key, public = _key("sbx")
    svc_key, svc_public = _key("svc")
    sbx = site.call("create_sandbox", name="scratch")
    assert sbx["status"] == "running", sbx
    site.call("deploy_service", name="scratch", image=APP_IMAGE, port=8000, ssh_public_key=svc_public)
    assert site.call("ssh_info", sandbox="scratch")["error"]["code"] == "invalid_input"
    info = site.call("add_ssh_key", sandbox="scratch", public_key=public)
    assert info["target"] == "sandbox scratch" and info["user"] == "scratch.acme", info
    assert site.call("add_ssh_key", public_key=public)["error"]["code"] == "invalid_input"

    # One user name, two targets of that name: each key lands in its own.
    assert _run(site, "scratch.acme", key, "echo in-sandbox").stdout == "in-sandbox\n"
    assert _run(site, "scratch.acme", svc_key, "echo in-service").stdout == "in-service\n"
    events = site.call("list_events", kind="sandbox")["events"]
    assert [e["type"] for e in events if e["type"] == "ssh_session"] == ["ssh_session"], events

    async def forward() -> str:
        async with await _connect(site, "scratch.acme", key) as conn:
            with pytest.raises(asyncssh.ChannelOpenError) as err:
                await conn.open_connection("localhost", 8000)
            return err.value.reason

    assert "only the service's own port" in site.run(forward)
    site.call("delete_sandbox", sandbox="scratch", confirm=True)
    with pytest.raises(asyncssh.PermissionDenied):
        _run(site, "scratch.acme", key, "true")


def test_a_workload_that_does_not_run_ends_the_session_with_a_reason(site: Site, fake_backend: FakeBackend) -> None:
    key, public = _key()
    svc = site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    fake_backend.crash(svc["id"], 1)  # exited; the service is still meant to run, so the key still logs in
    done = _run(site, "web.acme", key, "echo hi")
    assert done.exit_status == 255 and "is not running" in done.stderr and "service web" in done.stderr, done


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    with serving(_Echo) as port:
        yield port


def test_a_tunnel_in_use_is_not_idle_and_is_recorded(site: Site, fake_backend: FakeBackend, echo: int) -> None:
    key, public = _key()
    site.call("deploy_service", name="web", image=APP_IMAGE, port=8000, ssh_public_key=public)
    fake_backend.publish_port = echo  # the service's port echoes
    site.platform.settings.ssh_idle_timeout_s = 0.5
    rounds = 12

    async def tunnel() -> list[bytes]:
        answers = []
        async with await _connect(site, "web.acme", key) as conn:  # `ssh -N -L`: no session, one forward
            reader, writer = await conn.open_connection("localhost", 8000)
            for i in range(rounds):  # about 2 s of traffic: four idle timeouts and more
                writer.write(b"ping %d\n" % i)
                answers.append(await reader.readline())
                await anyio.sleep(0.2)
            writer.close()
            with anyio.fail_after(10):  # and once it carries nothing, it idles out
                await conn.wait_closed()
        return answers

    assert site.run(tunnel) == [b"ping %d\n" % i for i in range(rounds)]
    audit = site.call("list_audit", key=site.admin, tenant="acme")["entries"]
    forwards = [a for a in audit if a["action"] == "ssh_session" and "forward to localhost:8000" in a["detail"]]
    sent = sum(len(b"ping %d\n" % i) for i in range(rounds))
    assert [a["outcome"] for a in forwards] == [f"closed: {sent} bytes sent, {sent} received"], audit
