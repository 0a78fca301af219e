"""MCP sessions: the session table, and SessionGate through Starlette's TestClient in front of a stand-in
for the MCP SDK's streamable-HTTP app (no server, no engine)."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_server.auth import PRINCIPAL_KEY
from mcp_server.sessions import SessionGate, SessionTable
from orchestrator.errors import QuotaExceeded
from orchestrator.models import Principal
from orchestrator.ratelimit import RateLimiter

KEYS = {
    "a1": Principal(tenant_id="t_a", tenant_name="a", role="member", key_id="a1"),
    "a2": Principal(tenant_id="t_a", tenant_name="a", role="member", key_id="a2"),
    "b1": Principal(tenant_id="t_b", tenant_name="b", role="member", key_id="b1"),
}


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_session_table_counts_per_tenant_and_ties_sessions_to_keys() -> None:
    clock = _FakeClock()
    table = SessionTable(per_tenant=2, idle_s=60, clock=clock)
    a1, a2, b1 = KEYS["a1"], KEYS["a2"], KEYS["b1"]
    for sid in ("s1", "s2"):
        table.begin_opening(a1)
        table.end_opening(a1, sid)
    with pytest.raises(QuotaExceeded):
        table.begin_opening(a2)  # the cap is the tenant's, whichever of its keys asks
    table.begin_opening(b1)
    table.end_opening(b1, None)  # an initialize that failed holds nothing
    assert table.held_by("t_b") == 0
    assert not table.enter("s1", a2) and not table.enter("s1", b1) and not table.enter("nope", a1)
    assert table.enter("s1", a1)
    table.leave("s1", closed=True)
    assert table.held_by("t_a") == 1


def test_idle_sessions_free_their_slot_but_busy_ones_do_not() -> None:
    clock = _FakeClock()
    table = SessionTable(per_tenant=1, idle_s=60, clock=clock)
    a1 = KEYS["a1"]
    table.begin_opening(a1)
    table.end_opening(a1, "s1")
    assert table.enter("s1", a1)  # e.g. a GET stream held open
    clock.now = 1000
    assert table.held_by("t_a") == 1
    table.leave("s1", closed=False)
    clock.now = 1059
    assert table.held_by("t_a") == 1
    clock.now = 1060
    assert table.held_by("t_a") == 0 and not table.enter("s1", a1)


def _fake_sdk() -> ASGIApp:
    """Answers like the SDK's streamable-HTTP app: initialize opens a session, DELETE closes it."""
    open_ids: set[str] = set()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        sid = dict(scope["headers"]).get(b"mcp-session-id", b"").decode()
        if scope["method"] == "POST" and not sid:
            new = f"s{len(open_ids) + 1}"
            open_ids.add(new)
            response = JSONResponse({"opened": new}, headers={"mcp-session-id": new})
        elif sid not in open_ids:
            response = JSONResponse({"error": "Session not found"}, status_code=404)
        elif scope["method"] == "DELETE":
            open_ids.discard(sid)
            response = JSONResponse({"closed": sid})
        else:
            response = JSONResponse({"served": sid})
        await response(scope, receive, send)

    return app


def _as_key(app: ASGIApp) -> ASGIApp:
    async def authenticated(scope: Scope, receive: Receive, send: Send) -> None:
        scope[PRINCIPAL_KEY] = KEYS[dict(scope["headers"])[b"x-key"].decode()]
        await app(scope, receive, send)

    return authenticated


def test_session_gate_in_front_of_the_sdk() -> None:
    limiter = RateLimiter(per_minute=4, clock=lambda: 0.0)
    gate = SessionGate(_fake_sdk(), SessionTable(per_tenant=2, idle_s=60), lambda: limiter)
    client = TestClient(_as_key(gate))

    def post(key: str, sid: str | None = None, method: str = "POST") -> httpx.Response:
        headers = {"x-key": key} | ({"mcp-session-id": sid} if sid else {})
        return client.request(method, "/mcp", headers=headers, content=json.dumps({}))

    assert post("a1").json() == {"opened": "s1"}
    assert post("a1", "s1").json() == {"served": "s1"}
    hijack = post("b1", "s1")
    assert hijack.status_code == 404 and hijack.json()["error"]["code"] == "not_found"
    assert post("a2", "s1", "DELETE").status_code == 404  # another key of the same tenant cannot close it
    assert post("a1").status_code == 200
    capped = post("a2")
    assert capped.status_code == 403 and capped.json()["error"]["code"] == "quota_exceeded"
    assert post("a1", "s1", "DELETE").json() == {"closed": "s1"}
    assert post("a1").status_code == 200  # the closed session's slot is free again
    refused = post("a1")  # four opening requests (the capped one too) spent the tenant's four tokens
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert post("b1").status_code == 200  # the other tenant has its own bucket and slots
