"""Changes of a running service on Nomad are Nomad's own: an update is a deployment (a canary that must pass
the service's health check, then is promoted), a bad one is reverted by Nomad while the previous version
keeps serving, a rollback reverts the job to the version that ran it, and a restart restarts the task in
its allocation."""

from __future__ import annotations

from typing import Any

import pytest

from .conformance import answers
from .harness import AgentHost, ToolFailed, call, connect
from .nomad_agent import nomad_get

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def _serving(jid: str) -> list[dict[str, Any]]:
    return [a for a in nomad_get(f"job/{jid}/allocations") if a["DesiredStatus"] == "run"]


async def test_updates_are_deployments_reverted_when_unhealthy_rollbacks_revert_restarts_in_place(
    nomad_agenthost: AgentHost, hello_image: str
) -> None:
    key = nomad_agenthost.tenant("deploys")
    async with connect(nomad_agenthost, key, "http") as client:
        args = {"name": "web", "image": hello_image, "port": 8000, "env": {"GREETING": "one"}}
        svc = await call(client, "deploy_service", args)
        assert svc["status"] == "running", svc
        jid = f"ah-{svc['id']}"
        first = nomad_get(f"job/{jid}")

        # A good update: a deployment of the new version that Nomad reports successful.
        good = await call(client, "update_service", {"service": "web", "env": {"GREETING": "two"}})
        assert good["status"] == "running" and await answers(good["internal_url"]) == "hello two"
        job = nomad_get(f"job/{jid}")
        deployment = nomad_get(f"job/{jid}/deployment")
        assert (deployment["JobVersion"], deployment["Status"]) == (job["Version"], "successful"), deployment
        assert deployment["TaskGroups"]["main"]["DesiredCanaries"] == 1 and deployment["TaskGroups"]["main"]["Promoted"]
        [serving] = _serving(jid)
        assert serving["JobVersion"] == job["Version"]

        # A bad update: the new version never passes its health check. Nomad fails the deployment and reverts
        # the job; the previous version never stopped serving; the caller is told which deployment failed.
        with pytest.raises(ToolFailed) as err:
            await call(client, "update_service", {"service": "web", "command": ["sleep", "3600"]})
        assert err.value.code == "workload_failed", err.value.message
        failed = [d for d in nomad_get(f"job/{jid}/deployments") if d["Status"] == "failed"]
        assert len(failed) == 1 and f"Nomad deployment {failed[0]['ID'][:8]}" in err.value.message
        assert "rolled back (service is running on its previous version)" in err.value.message
        assert await answers(good["internal_url"]) == "hello two"  # the same allocation, never replaced
        assert [a["ID"] for a in _serving(jid)] == [serving["ID"]]
        got = await call(client, "get_service", {"service": "web"})
        assert got["status"] == "running" and got["internal_url"] == good["internal_url"], got
        reverted = nomad_get(f"job/{jid}")
        assert reverted["Version"] == failed[0]["JobVersion"] + 1  # Nomad's auto-revert
        assert reverted["Meta"] == job["Meta"]

        # A rollback to the first revision reverts the job to the version that ran it: the new version is a
        # copy of the first one (its meta too), not a job registered again.
        rolled = await call(client, "rollback_service", {"service": "web", "revision": 1})
        assert rolled["status"] == "running", rolled
        now = nomad_get(f"job/{jid}")
        assert now["Version"] > reverted["Version"] and now["Meta"] == first["Meta"]
        got = await call(client, "get_service", {"service": "web"})
        assert await answers(got["internal_url"]) == "hello one"

        # A restart restarts the task in its allocation, and is not counted as a crash.
        [before] = _serving(jid)
        restarted = await call(client, "restart_service", {"service": "web"})
        assert restarted["status"] == "running" and restarted["restarts"] == 0, restarted
        [after] = _serving(jid)
        assert after["ID"] == before["ID"] and after["TaskStates"]["main"]["Restarts"] == 1
        events = [e["Type"] for e in after["TaskStates"]["main"]["Events"]]
        assert "Restart Signaled" in events, events
        assert await answers(restarted["internal_url"] or got["internal_url"]) == "hello one"
        await call(client, "delete_service", {"service": "web", "confirm": True})
