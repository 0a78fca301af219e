"""diagnose_service through a real MCP client: the facts of one service and the likely cause of its trouble."""

from __future__ import annotations

import pytest

from .harness import AgentHost, ToolFailed, call, connect, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


async def test_diagnose_a_healthy_service_and_one_whose_port_does_not_answer(
    agenthost: AgentHost, hello_image: str, transport: str
) -> None:
    key = agenthost.tenant(f"diag-{transport}")
    command = ["sh", "-c", "echo token=$TOKEN; exec python3 /app/app.py"]
    async with connect(agenthost, key, transport) as client:
        env = {"TOKEN": "s3cr3t-diag-value"}
        await call(
            client, "deploy_service", {"name": "ok", "image": hello_image, "port": 8000, "env": env, "command": command}
        )
        healthy = await call(client, "diagnose_service", {"service": "ok"})
        assert healthy["likely_cause"] is None and healthy["hint"] == "no problem found", healthy
        assert healthy["status"] == "running" and healthy["container"] == "running", healthy
        assert healthy["port_answers"] is True and healthy["image_present"] is True, healthy
        assert "token=" in healthy["log_tail"] and "s3cr3t-diag-value" not in healthy["log_tail"], healthy

        # The app listens on 8000; the service says 9000.
        await call(client, "deploy_service", {"name": "deaf", "image": hello_image, "port": 9000, "wait": False})
        deaf = await until(client, "diagnose_service", {"service": "deaf"}, lambda d: d["container"] == "running")
        assert deaf["port_answers"] is False, deaf
        assert deaf["likely_cause"] == "the container runs but port 9000 does not answer", deaf
        assert "0.0.0.0:9000" in deaf["hint"], deaf

        await call(client, "stop_service", {"service": "deaf"})
        stopped = await call(client, "diagnose_service", {"service": "deaf"})
        assert stopped["likely_cause"] == "stopped on request" and "start_service" in stopped["hint"], stopped
        for name in ("ok", "deaf"):
            await call(client, "delete_service", {"service": name, "confirm": True})


async def test_attack_diagnose_another_tenants_service_is_not_found(agenthost: AgentHost, hello_image: str) -> None:
    owner, other = agenthost.tenant("diag-owner"), agenthost.tenant("diag-other")
    async with connect(agenthost, owner, "http") as a, connect(agenthost, other, "http") as b:
        svc = await call(a, "deploy_service", {"name": "private", "image": hello_image, "port": 8000, "wait": False})
        for ref in ("private", svc["id"]):
            with pytest.raises(ToolFailed) as err:
                await call(b, "diagnose_service", {"service": ref})
            assert err.value.code == "not_found", (ref, err.value)
        await call(a, "delete_service", {"service": "private", "confirm": True})
