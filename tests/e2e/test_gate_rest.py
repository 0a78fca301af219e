"""The gate in front of every tool, attacked over REST and MCP: an Idempotency-Key replay passes the same
checks as a fresh call and never hands out a secret twice; reveal=true needs a full-scope key on a writable
server; request bodies are bounded in size and in depth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from .harness import AgentHost, ToolFailed, call, connect, mcp_post

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

MIB = 1024 * 1024


def _rest(host: AgentHost, key: str) -> httpx.Client:
    return httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def _key_names(api: httpx.Client) -> list[str]:
    listed = api.post("/v1/tools/list_api_keys", json={})
    listed.raise_for_status()
    return [k["name"] for k in listed.json()["keys"]]


def test_attack_read_key_replaying_an_admins_idempotency_key_gets_no_key(agenthost: AgentHost) -> None:
    admin = _rest(agenthost, agenthost.admin_key)
    made = admin.post("/v1/tools/create_api_key", json={"name": "gate-reader", "scope": "read"})
    assert made.status_code == 200, made.text
    reader = _rest(agenthost, made.json()["key"])
    body = {"name": "gate-replayed"}  # a member key: the shared admin tenant keeps one admin key (test_keys)
    first = admin.post("/v1/tools/create_api_key", json=body, headers={"Idempotency-Key": "gate-idem-1"})
    assert first.status_code == 200 and first.json()["key"].startswith("ah_"), first.text

    stolen = reader.post("/v1/tools/create_api_key", json=body, headers={"Idempotency-Key": "gate-idem-1"})
    assert stolen.status_code == 403, stolen.text
    assert stolen.json()["error"]["code"] == "read_only"
    assert first.json()["key"] not in stolen.text and "idempotent-replay" not in stolen.headers
    assert _key_names(admin).count("gate-replayed") == 1


def test_attack_replaying_create_api_key_never_shows_the_key_twice(agenthost: AgentHost) -> None:
    admin = _rest(agenthost, agenthost.admin_key)
    body = {"name": "gate-once"}
    first = admin.post("/v1/tools/create_api_key", json=body, headers={"Idempotency-Key": "gate-idem-2"})
    assert first.status_code == 200, first.text
    again = admin.post("/v1/tools/create_api_key", json=body, headers={"Idempotency-Key": "gate-idem-2"})
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "conflict" and "shown once" in error["hint"], error
    assert first.json()["key"] not in again.text
    assert _key_names(admin).count("gate-once") == 1


async def test_attack_concurrent_requests_with_one_idempotency_key_run_once(agenthost: AgentHost) -> None:
    key = agenthost.tenant("gate-race")
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "gate-idem-race"}
    responses: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=agenthost.url, headers=headers, timeout=120) as api:

        async def create() -> None:
            responses.append(await api.post("/v1/tools/create_api_key", json={"name": "gate-raced"}))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(create)
    made = [r for r in responses if r.status_code == 200]
    assert len(made) == 1, [(r.status_code, r.text) for r in responses]
    assert made[0].json()["key"].startswith("ah_")
    for response in responses:
        if response is made[0]:
            continue
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        if error["code"] == "in_progress":  # arrived while the first was running
            assert "retry" in error["hint"], error
        else:  # arrived after it finished: its answer held a key, shown once
            assert error["code"] == "conflict" and "shown once" in error["hint"], error
    assert _key_names(_rest(agenthost, key)).count("gate-raced") == 1


def _tenant_with_secrets(host: AgentHost, tenant: str, image: str) -> tuple[str, str]:
    """A tenant with a service holding a secret env value and a Redis database; returns (full key, read key)."""
    key = host.tenant(tenant)
    api = _rest(host, key)
    svc = {"name": "vault", "image": image, "port": 8000, "env": {"TOKEN": "gate-s3cret-value"}, "wait": False}
    api.post("/v1/tools/deploy_service", json=svc).raise_for_status()
    db = {"name": "cache", "engine": "redis", "memory_mb": 64, "wait": False}
    api.post("/v1/tools/create_database", json=db).raise_for_status()
    reader = api.post("/v1/tools/create_api_key", json={"name": "reader", "scope": "read"})
    reader.raise_for_status()
    return key, reader.json()["key"]


def _clean_up_secrets(host: AgentHost, key: str) -> None:
    api = _rest(host, key)
    api.post("/v1/tools/delete_service", json={"service": "vault", "confirm": True}).raise_for_status()
    api.post("/v1/tools/delete_database", json={"database": "cache", "confirm": True}).raise_for_status()


async def _refused_to_reveal(client: Any, code: str) -> None:
    for tool, args in (("list_env", {"service": "vault"}), ("database_connection_string", {"database": "cache"})):
        with pytest.raises(ToolFailed) as err:
            await call(client, tool, {**args, "reveal": True})
        assert err.value.code == code, (tool, err.value)
        assert "reveal" in err.value.message and "(hint: " in err.value.message, err.value.message
    masked = await call(client, "list_env", {"service": "vault"})
    assert masked["vars"]["TOKEN"] != "gate-s3cret-value" and "gate-s3cret-value" not in str(masked)
    conn = await call(client, "database_connection_string", {"database": "cache"})
    assert conn["revealed"] is False and "****" in conn["url"]


async def test_attack_read_key_cannot_reveal_secrets(agenthost: AgentHost, hello_image: str) -> None:
    key, read_key = _tenant_with_secrets(agenthost, "gate-reveal", hello_image)
    for transport in ("stdio", "http"):
        async with connect(agenthost, read_key, transport) as reader:
            await _refused_to_reveal(reader, "read_only")
    async with connect(agenthost, key, "http") as owner:
        assert (await call(owner, "list_env", {"service": "vault", "reveal": True}))["vars"]["TOKEN"] == (
            "gate-s3cret-value"
        )
    _clean_up_secrets(agenthost, key)


async def test_attack_read_only_server_never_reveals_secrets(agenthost: AgentHost, hello_image: str) -> None:
    key, _ = _tenant_with_secrets(agenthost, "gate-ro-server", hello_image)
    read_only = AgentHost(data_dir=agenthost.data_dir, env={**agenthost.env, "AGENTHOST_READ_ONLY": "true"})
    async with connect(read_only, key, "stdio") as client:
        assert (await call(client, "whoami"))["scope"] == "full"
        await _refused_to_reveal(client, "read_only")
    _clean_up_secrets(agenthost, key)


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_attack_rest_body_over_a_mebibyte_gets_413(agenthost: AgentHost) -> None:
    key = agenthost.tenant("gate-limits")
    api = _rest(agenthost, key)
    big = b'{"name": "' + b"x" * (2 * MIB) + b'"}'
    declared = api.post("/v1/tools/create_api_key", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["code"] == "too_large" and "1048576" in declared.json()["error"]["message"]
    chunked = api.post("/v1/tools/create_api_key", content=_chunks(big))  # no Content-Length: counted as read
    assert chunked.status_code == 413, chunked.text
    assert chunked.json()["error"]["code"] == "too_large"
    over_mcp = mcp_post(agenthost, key, b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "' + big)
    assert over_mcp.status_code == 413, over_mcp.text
    assert over_mcp.json()["error"]["code"] == "too_large"


def test_attack_deeply_nested_json_gets_400(agenthost: AgentHost) -> None:
    key = agenthost.tenant("gate-limits")
    api = _rest(agenthost, key)
    deep = "[" * 10_000 + "]" * 10_000
    just_over = "[" * 65 + "]" * 65
    for body in (deep, f'{{"name": {deep}}}', f'{{"name": "n", "tenant": {just_over}}}'):
        response = api.post("/v1/tools/create_api_key", content=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_input" and "nested" in error["message"], error
    over_mcp = mcp_post(agenthost, key, f'{{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {deep}}}'.encode())
    assert over_mcp.status_code == 400, over_mcp.text
    assert api.post("/v1/tools/whoami", json={}).status_code == 200  # the server is still fine
