"""The SSH gateway: one SSH server for the platform (asyncssh), run by `agenthost serve`.

The user name addresses the target, ``<service>.<tenant>``, and only public keys are taken: the key must
be one of the target's (``SshManager.authorize``), and every refusal is SSH's own "Permission denied"
whatever the reason, so a stranger learns nothing of which tenants or services exist. A session is an
exec inside the workload through the backend's ``session`` (Docker exec / Nomad alloc exec): with a PTY
when the client asks for one (its size changes passed on), else a command with its stdin, stdout, stderr
and exit status. When a session ends for any reason (the client left, the key was revoked, the
connection idled) its command and everything it started are killed inside the workload.

While a connection is open, its key is checked again every ``RECHECK_S`` (so a key removed in
any process on the data dir closes its sessions within seconds), and a connection with no traffic for
``ssh_idle_timeout_s`` is closed. ``ssh -L`` reaches the service's own port and the tenant's databases by
name (``forwarding``); sftp runs over the same exec channel (``sftp``); remote forwarding, agent and X11
requests and other subsystems are refused.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncssh
from anyio.abc import TaskGroup, TaskStatus
from asyncssh.stream import SSHServerStreamSession

from ..backends.base import Backend, SessionInput, SessionSpec
from ..errors import AgentHostError
from ..events import EventLog
from ..settings import Settings
from ..store import Store
from .forwarding import forward_endpoint, open_forward
from .hostkey import load_host_key
from .manager import SshManager, Target
from .sftp import WorkloadSftp

__all__ = ["RECHECK_S", "SHELL", "SshGateway"]

log = logging.getLogger(__name__)

RECHECK_S = 2.0  # how often an open connection's key is checked again
# A login shell: bash where the image has it, else sh.
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -il; fi; exec sh -il"]


class _Connection(asyncssh.SSHServer):
    """One client connection: its authentication, its sessions, and the watch that ends them."""

    def __init__(self, gateway: SshGateway) -> None:
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.target: Target | None = None
        self.peer = "?"
        self.active = time.monotonic()
        self.reason: str | None = None  # why the platform closed it
        self.scopes: set[anyio.CancelScope] = set()
        self.closed = anyio.Event()

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        for scope in self.scopes:
            scope.cancel()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Called for the client's query and again for its signed request: the last yes is the one that logs in.
        target = await self.gateway.ssh.authorize(username, key.get_fingerprint("sha256"))
        if target is not None:
            self.target = target
        return target is not None

    def auth_completed(self) -> None:
        self.gateway.watch(self)

    def session_requested(self) -> Any:
        assert self.target is not None
        self.gateway.check_limits(self.target)
        return SSHServerStreamSession(self._session, self._sftp, sftp_version=3)

    def _sftp(self, chan: Any) -> WorkloadSftp:
        target = self.target
        assert target is not None
        started = datetime.now(UTC)
        self.gateway.opened(target)

        def touch() -> None:
            self.active = time.monotonic()

        async def ended() -> None:
            self.gateway.closed(target)
            await self.gateway.record(target, self.peer, "sftp", started, "closed", None)

        return WorkloadSftp(chan, self.gateway.backend, target.workload_id, touch, ended)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        """``ssh -L``: a coroutine the connection awaits (a truthy answer here; the refusal comes from it)."""
        return self._forward(dest_host, dest_port)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # ``ssh -R``: nothing listens on the gateway's behalf

    async def _forward(self, host: str, port: int) -> Any:
        assert self.conn is not None and self.target is not None
        endpoint = await forward_endpoint(self.gateway.store, self.gateway.backend, self.target, host, port)
        if endpoint is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                "only the service's own port (localhost:<port>) and the tenant's databases by name are forwarded",
            )
        target = self.target
        self.gateway.check_limits(target)  # a forward is a session too: it holds a connection into the workload
        self.gateway.opened(target)
        started = datetime.now(UTC)
        sent, received = [0], [0]

        def counter(total: list[int]) -> Callable[[int], None]:
            def count(n: int) -> None:
                total[0] += n
                self.active = time.monotonic()

            return count

        def ended() -> None:
            self.gateway.closed(target)
            outcome = f"closed: {sent[0]} bytes sent, {received[0]} received"
            self.gateway.spawn(self.gateway.record, target, self.peer, f"forward to {host}:{port}", started, outcome)

        self.active = time.monotonic()
        try:
            return await open_forward(endpoint, counter(sent), counter(received), ended)
        except BaseException:
            self.gateway.closed(target)
            raise

    def close(self, reason: str) -> None:
        self.reason = reason
        if self.conn is not None:
            self.conn.close()

    async def _session(
        self, stdin: asyncssh.SSHReader[bytes], stdout: asyncssh.SSHWriter[bytes], stderr: asyncssh.SSHWriter[bytes]
    ) -> None:
        assert self.target is not None
        chan: Any = stdout.channel
        if chan.get_subsystem() is not None:
            stderr.write(b"agenthost: only shells and commands are served\r\n")
            chan.exit(1)
            return
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                code = await self.gateway.run_session(self, chan, stdin, stdout, stderr)
            finally:
                self.scopes.discard(scope)
        if scope.cancel_called:
            code = None
        try:
            chan.exit(code if code is not None else 255)
        except OSError:
            pass  # the connection is already gone


class SshGateway:
    def __init__(self, settings: Settings, store: Store, backend: Backend, ssh: SshManager, events: EventLog) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.ssh = ssh
        self.events = events
        self.per_tenant: Counter[str] = Counter()
        self.per_target: Counter[str] = Counter()
        self._tg: TaskGroup | None = None
        self._conns: set[_Connection] = set()

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; ``task_status`` gets the port. Raises: OSError when the port is taken."""
        private, _, _ = load_host_key(self.settings.data_dir, self.store.secrets)
        server = await asyncssh.create_server(
            lambda: _Connection(self),
            self.settings.ssh_bind,
            self.settings.ssh_port,
            server_host_keys=[asyncssh.import_private_key(private)],
            server_version="agenthost",
            line_editor=False,
            encoding=None,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=True,
            login_timeout=30,
            keepalive_interval=30,
        )
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                port = server.sockets[0].getsockname()[1]
                log.info("agenthost serving SSH on %s:%s", self.settings.ssh_bind, port)
                task_status.started(port)
                await anyio.sleep_forever()
        finally:
            server.close()
            with anyio.CancelScope(shield=True):
                await server.wait_closed()
                await self._close_all()

    async def _close_all(self, grace_s: float = 15.0) -> None:
        """Close every connection, and give their sessions the time to kill what they ran in the workloads."""
        for conn in list(self._conns):
            conn.close("the server is shutting down")
        with anyio.move_on_after(grace_s):
            while sum(self.per_tenant.values()) > 0:
                await anyio.sleep(0.1)

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Run ``fn(*args)`` in the gateway's task group (a callback of asyncssh cannot await)."""
        if self._tg is not None:
            self._tg.start_soon(fn, *args)

    def watch(self, conn: _Connection) -> None:
        if self._tg is not None:
            self._conns.add(conn)
            self._tg.start_soon(self._watch, conn)

    async def _watch(self, conn: _Connection) -> None:
        """Close the connection once its key no longer lets it in, or it idled too long."""
        await self._check_until_closed(conn)
        self._conns.discard(conn)  # (cancelled, it stays: the shutdown closes what is left)

    async def _check_until_closed(self, conn: _Connection) -> None:
        assert conn.target is not None
        while not conn.closed.is_set():
            with anyio.move_on_after(RECHECK_S):
                await conn.closed.wait()
            if conn.closed.is_set():
                return
            try:
                allowed = await self.ssh.still_allowed(conn.target)
            except AgentHostError as exc:
                log.warning("ssh: checking %s again: %s", conn.target.label, exc)
                continue
            if not allowed:
                conn.close("the key was revoked, or the service stopped or was deleted")
            elif time.monotonic() - conn.active > self.settings.ssh_idle_timeout_s:
                conn.close(f"idle for {self.settings.ssh_idle_timeout_s:g} s")

    def check_limits(self, target: Target) -> None:
        """Raises: ChannelOpenError (the client sees it) when the tenant or the target has its fill of sessions."""
        if self.per_tenant[target.tenant_id] >= self.settings.ssh_max_sessions_per_tenant:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE,
                f"the tenant has {self.settings.ssh_max_sessions_per_tenant} SSH sessions open already",
            )
        if self.per_target[target.workload_id] >= self.settings.ssh_max_sessions_per_target:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_RESOURCE_SHORTAGE,
                f"{target.label} has {self.settings.ssh_max_sessions_per_target} SSH sessions open already",
            )

    def opened(self, target: Target) -> None:
        self.per_tenant[target.tenant_id] += 1
        self.per_target[target.workload_id] += 1

    def closed(self, target: Target) -> None:
        self.per_tenant[target.tenant_id] -= 1
        self.per_target[target.workload_id] -= 1

    async def run_session(
        self,
        conn: _Connection,
        chan: Any,
        stdin: asyncssh.SSHReader[bytes],
        stdout: asyncssh.SSHWriter[bytes],
        stderr: asyncssh.SSHWriter[bytes],
    ) -> int | None:
        """One session, from the request to its end: the exec in the workload, and its event and audit row."""
        target = conn.target
        assert target is not None
        command: str | None = chan.get_command()
        term: str | None = chan.get_terminal_type()
        width, height, _, _ = chan.get_terminal_size()
        spec = SessionSpec(
            argv=["/bin/sh", "-c", command] if command else SHELL,
            tty=term is not None,
            term=term,
            size=(width, height) if term is not None and width and height else None,
        )
        self.opened(target)
        started = datetime.now(UTC)
        code: int | None = None
        outcome = "lost"
        send, receive = anyio.create_memory_object_stream[SessionInput](64)

        async def pump_in() -> None:
            async with send:
                while True:
                    try:
                        data = await stdin.read(65536)
                    except asyncssh.TerminalSizeChanged as exc:
                        await send.send((exc.width, exc.height))
                        continue
                    except (asyncssh.BreakReceived, asyncssh.SignalReceived):
                        continue
                    conn.active = time.monotonic()
                    if not data:
                        await send.send(None)
                        return
                    await send.send(data)

        async def on_output(stream: str, data: bytes) -> None:
            conn.active = time.monotonic()
            writer = stderr if stream == "stderr" else stdout
            writer.write(data)
            await writer.drain()

        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pump_in)
                    code = await self.backend.session(target.workload_id, spec, receive, on_output)
                    outcome = f"exit {code}" if code is not None else "lost"
                    tg.cancel_scope.cancel()
            except* AgentHostError as group:  # the task group hands it on in a group
                exc = group.exceptions[0]
                assert isinstance(exc, AgentHostError)
                stderr.write(f"agenthost: {exc.message} ({target.label})\r\n".encode())
                outcome = exc.code
        except anyio.get_cancelled_exc_class():
            outcome = f"closed: {conn.reason or 'the client left'}"
            raise
        finally:
            self.closed(target)
            with anyio.CancelScope(shield=True):
                await self.record(target, conn.peer, "command" if command else "shell", started, outcome, code)
        return code

    async def record(
        self, target: Target, peer: str, what: str, started: datetime, outcome: str, code: int | None = None
    ) -> None:
        ended = datetime.now(UTC)
        seconds = (ended - started).total_seconds()
        detail = (
            f"{what} from {peer}, key {target.key_fingerprint}, started {started.isoformat(timespec='seconds')},"
            f" ended {ended.isoformat(timespec='seconds')} ({seconds:.0f} s): {outcome}"
        )
        ts = self.store.scoped(target.tenant_id)
        await self.events.record(ts, target.kind, target.workload_id, target.name, "ssh_session", detail, code)
        try:
            await ts.audit.record(f"ssh:{target.key_fingerprint}", "ssh_session", target.label, outcome, detail)
        except (AgentHostError, sqlite3.Error):  # the audit row is a record, never a reason for a session to fail
            log.exception("ssh session of %s not audited", target.label)
