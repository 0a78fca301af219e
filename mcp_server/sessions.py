"""In front of the MCP SDK's streamable-HTTP app: who may open, use and hold MCP sessions.

A handshake-era session (``initialize``, then ``Mcp-Session-Id`` on every request) belongs to the API key
that opened it: a request with another key gets 404, as if the session did not exist. A tenant holds at
most ``mcp_sessions_per_tenant`` open sessions; one more ``initialize`` gets 403 ``quota_exceeded``. A
session's slot frees when the client deletes it (DELETE /mcp), when the SDK has closed it (its id answers
404), or once it has had no request in flight for ``mcp_session_idle_s`` (the SDK closes it then too: its
idle timeout is the same setting, and its clock starts before ours). Opening a session, like the 2026
protocol's ``server/discover``, takes a token from the tenant's rate limit, as a tool call does.

The 2026 protocol has no sessions: each of its requests is authenticated on its own and its tool calls go
through the registry's gate, so nothing here holds for it beyond ``server/discover``'s rate limit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.errors import AgentHostError, NotFound, QuotaExceeded
from orchestrator.models import Principal
from orchestrator.ratelimit import RateLimiter

from .auth import principal_of
from .limits import error_response

__all__ = ["SessionGate", "SessionTable"]


@dataclass
class _Session:
    tenant_id: str
    key_id: str
    in_flight: int
    last_seen: float


class SessionTable:
    """The open sessions, by id, with their owners; a slot is counted until the session is surely gone."""

    def __init__(self, per_tenant: int, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_tenant = per_tenant
        self.idle_s = idle_s
        self._clock = clock
        self._sessions: dict[str, _Session] = {}
        self._opening: Counter[str] = Counter()

    def _expire(self) -> None:
        now = self._clock()
        for sid, s in list(self._sessions.items()):
            if s.in_flight == 0 and now - s.last_seen >= self.idle_s:
                del self._sessions[sid]

    def held_by(self, tenant_id: str) -> int:
        self._expire()
        return self._opening[tenant_id] + sum(1 for s in self._sessions.values() if s.tenant_id == tenant_id)

    def begin_opening(self, p: Principal) -> None:
        """Hold a slot while the opening request runs. Raises: QuotaExceeded when the tenant has none left."""
        if self.held_by(p.tenant_id) >= self.per_tenant:
            raise QuotaExceeded(
                f"this tenant has {self.per_tenant} open MCP sessions, the most it may hold",
                "close one (DELETE /mcp with its Mcp-Session-Id; MCP clients do when they disconnect), or wait"
                f" until an idle one closes ({self.idle_s:.0f} s without requests)",
            )
        self._opening[p.tenant_id] += 1

    def end_opening(self, p: Principal, session_id: str | None) -> None:
        """The opening request ended; ``session_id`` is the session it opened, if it did."""
        self._opening[p.tenant_id] -= 1
        if self._opening[p.tenant_id] <= 0:
            del self._opening[p.tenant_id]
        if session_id is not None:
            self._sessions[session_id] = _Session(p.tenant_id, p.key_id, 0, self._clock())

    def enter(self, session_id: str, p: Principal) -> bool:
        """A request for an open session begins; False when there is no such session for this key."""
        self._expire()
        s = self._sessions.get(session_id)
        if s is None or s.key_id != p.key_id:
            return False
        s.in_flight += 1
        return True

    def leave(self, session_id: str, closed: bool) -> None:
        """A request for a session ended; ``closed`` when the session ended with it (or had already)."""
        s = self._sessions.get(session_id)
        if s is None:
            return
        s.in_flight -= 1
        s.last_seen = self._clock()
        if closed:
            del self._sessions[session_id]


class SessionGate:
    """ASGI middleware for the MCP endpoint (after BearerAuth, which put the caller's Principal in the scope)."""

    def __init__(
        self, app: ASGIApp, table: SessionTable, limiter: Callable[[], RateLimiter], path: str = "/mcp"
    ) -> None:
        self.app = app
        self.table = table
        self.limiter = limiter
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        session_id = headers.get("mcp-session-id")
        version = headers.get("mcp-protocol-version")
        try:
            p = principal_of(scope)
            if session_id is not None:
                await self._in_session(session_id, p, scope, receive, send)
            elif scope["method"] == "POST" and (version is None or version in HANDSHAKE_PROTOCOL_VERSIONS):
                await self._opening(p, scope, receive, send)
            else:
                if headers.get("mcp-method") == "server/discover":
                    self.limiter().check(p.tenant_id)
                await self.app(scope, receive, send)
        except AgentHostError as exc:
            await error_response(exc)(scope, receive, send)

    async def _opening(self, p: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        self.limiter().check(p.tenant_id)
        self.table.begin_opening(p)
        opened: str | None = None

        async def watch(message: Message) -> None:
            nonlocal opened
            if message["type"] == "http.response.start" and message["status"] < 400:
                opened = Headers(raw=message["headers"]).get("mcp-session-id")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.table.end_opening(p, opened)

    async def _in_session(self, session_id: str, p: Principal, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.table.enter(session_id, p):
            raise NotFound("no open MCP session with this id for this key", "initialize a new session")
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            closed = status == 404 or (scope["method"] == "DELETE" and 200 <= status < 300)
            self.table.leave(session_id, closed)
