"""Tenants on a Nomad cluster, over an in-memory Nomad API: each tenant's networked jobs on one node chosen
before its first placement (agreed on under concurrent first placements), moved as a whole off a node that
is down or drained, with the jobs whose data stays behind reported, and volumes released for a restore."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from orchestrator.backends.base import WorkloadStatus
from orchestrator.backends.nomad.api import NomadApi
from orchestrator.backends.nomad.backend import NomadBackend
from orchestrator.backends.nomad.leftovers import copies_to_remove
from orchestrator.backends.nomad.tenants import (
    NODE_ATTR,
    lost_status,
    move_tenant,
    release_volume,
    tenant_node,
    tenant_pin_path,
)
from orchestrator.backends.nomad.volumes import volume_meta_path
from orchestrator.errors import Conflict, InvalidInput, NoCapacity, NotFound

pytestmark = pytest.mark.anyio

INSTANCE = "inst"
_NO_COPIES = {"left_copies_removed": 0, "left_copies_failed": 0}


class Cluster:
    """Nodes, jobs and Variables as Nomad's HTTP API shows them; CAS writes like Nomad's."""

    namespace = "default"

    def __init__(self, *free_mb: int) -> None:
        self.nodes = {
            f"node-{i}": {"ID": f"node-{i}", "Name": f"n{i}", "Status": "ready", "SchedulingEligibility": "eligible"}
            for i in range(1, len(free_mb) + 1)
        }
        self.free = {f"node-{i}": mb for i, mb in enumerate(free_mb, 1)}
        self.vars: dict[str, tuple[dict[str, str], int]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.registered: list[str] = []
        self.drains: list[tuple[str, dict[str, Any]]] = []
        self.index = 0
        self.lock = threading.Lock()
        self.before_write: Any = None  # called once before the next Variable write: a concurrent writer
        self.before_register: Any = None  # called once before the next job register: a concurrent caller

    def _node(self, node_id: str) -> dict[str, Any]:
        node = dict(self.nodes[node_id])
        node["NodeResources"] = {"Cpu": {"CpuShares": 4000, "TotalCpuCores": 2}, "Memory": {"MemoryMB": 4096}}
        node["Drain"] = bool(node.get("Drain"))
        return node

    def get(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        match parts:
            case ("nodes",):
                return [self._node(n) for n in self.nodes]
            case ("node", node_id):
                if node_id not in self.nodes:
                    raise NotFound(f"no node {node_id}")
                return self._node(node_id)
            case ("node", node_id, "allocations"):
                held = 4096 - self.free[node_id]
                return [{"DesiredStatus": "run", "ClientStatus": "running", "AllocatedResources": _held(held)}]
            case ("var", *path):
                if "/".join(path) not in self.vars:
                    raise NotFound("no variable")
                items, index = self.vars["/".join(path)]
                return {"Items": dict(items), "ModifyIndex": index}
            case ("vars",):
                prefix = (params or {})["prefix"]
                return [{"Path": p} for p in sorted(self.vars) if p.startswith(prefix)]
            case ("jobs",):
                return [{"ID": j["ID"], "Meta": j["Meta"]} for j in self.jobs.values()]
            case ("job", jid):
                if jid not in self.jobs:
                    raise NotFound(f"job {jid} not found")
                return _copy(self.jobs[jid])
        raise AssertionError(f"unexpected GET {parts}")

    def put(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        assert parts[0] == "var"
        if self.before_write is not None:
            racer, self.before_write = self.before_write, None
            racer()
        path = "/".join(parts[1:])
        with self.lock:
            current = self.vars.get(path, ({}, 0))[1]
            if params and int(params["cas"]) != current:
                raise Conflict("cas mismatch")
            self.index += 1
            self.vars[path] = (dict(body["Items"]), self.index)
        return {"ModifyIndex": self.index}

    def delete(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        assert parts[0] == "var"
        if self.vars.pop("/".join(parts[1:]), None) is None:
            raise NotFound("no variable")
        return None

    def post(self, *parts: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        match parts:
            case ("jobs",):
                if self.before_register is not None:
                    racer, self.before_register = self.before_register, None
                    racer()
                job = _copy(body["Job"])
                current = self.jobs.get(job["ID"])
                if body.get("EnforceIndex") and (current or {}).get("JobModifyIndex", 0) != body["JobModifyIndex"]:
                    raise Conflict(f"Enforcing job modify index {body['JobModifyIndex']}: as Nomad answers")
                self.index += 1
                job["Version"] = (current or {}).get("Version", -1) + 1
                job["JobModifyIndex"] = self.index
                self.jobs[job["ID"]] = job
                self.registered.append(job["ID"])
                return {"EvalID": "e"}
            case ("node", node_id, "eligibility"):
                self.nodes[node_id]["SchedulingEligibility"] = body["Eligibility"]
                return {}
            case ("node", node_id, "drain"):
                self.nodes[node_id]["Drain"] = True
                self.drains.append((node_id, body["DrainSpec"]))
                return {}
        raise AssertionError(f"unexpected POST {parts}")

    def job(self, jid: str, tenant: str, node: str, network: bool = True, volume: str = "", kind: str = "service"):
        tasks: list[dict[str, Any]] = [{"Name": "main", "Config": {}}]
        if network:
            tasks.insert(0, {"Name": "net", "Config": {}})
        if volume:
            tasks[-1]["Config"]["mount"] = [{"type": "volume", "source": volume}]
        self.index += 1
        self.jobs[jid] = {
            "ID": jid,
            "Version": 0,
            "JobModifyIndex": self.index,
            "Meta": {
                "agenthost.instance": INSTANCE,
                "agenthost.tenant": tenant,
                "agenthost.id": jid,
                "agenthost.kind": kind,
            },
            "Constraints": [{"LTarget": NODE_ATTR, "RTarget": node, "Operand": "="}],
            "TaskGroups": [{"Tasks": tasks}],
        }

    def pin(self, path: str, node: str) -> None:
        self.index += 1
        self.vars[path] = ({"node": node}, self.index)


def _held(mb: int) -> dict[str, Any]:
    return {"Tasks": {"main": {"Cpu": {"CpuShares": 100}, "Memory": {"MemoryMB": mb}}}, "TaskLifecycles": {}}


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


def _node_of(job: dict[str, Any]) -> str:
    (node,) = [c["RTarget"] for c in job["Constraints"] if c["LTarget"] == NODE_ATTR]
    return str(node)


def _api(cluster: Cluster) -> NomadApi:
    return cluster  # type: ignore[return-value]


def test_a_new_tenant_gets_the_ready_node_with_the_most_room_and_keeps_it() -> None:
    cluster = Cluster(1000, 3000, 2000)
    cluster.nodes["node-2"]["SchedulingEligibility"] = "ineligible"
    assert tenant_node(_api(cluster), INSTANCE, "", "t1") == ("node-3", "")
    assert cluster.vars[tenant_pin_path(INSTANCE, "t1")][0]["node"] == "node-3"
    cluster.free["node-1"] = 4000  # more room elsewhere later does not move a placed tenant
    assert tenant_node(_api(cluster), INSTANCE, "", "t1") == ("node-3", "")


def test_concurrent_first_placements_agree_on_one_node() -> None:
    """Another writer records the tenant on node-1 between our read and our write: ours loses the CAS, and
    both end on node-1, never on two nodes."""
    cluster = Cluster(3000, 1000)
    path = tenant_pin_path(INSTANCE, "t1")
    cluster.before_write = lambda: cluster.pin(path, "node-2")
    assert tenant_node(_api(cluster), INSTANCE, "", "t1")[0] == "node-2"
    assert cluster.vars[path][0]["node"] == "node-2"


def test_a_tenant_on_a_down_node_moves_as_a_whole_and_its_data_stays_reported() -> None:
    cluster = Cluster(2000, 2000)
    cluster.pin(tenant_pin_path(INSTANCE, "t1"), "node-1")
    cluster.pin(volume_meta_path(INSTANCE, "db-vol"), "node-1")
    cluster.job("web", "t1", "node-1")
    cluster.job("db", "t1", "node-1", volume="db-vol", kind="database")
    cluster.job("box", "t1", "node-1", network=False)  # not on the tenant network: Nomad moves it itself
    cluster.job("other", "t2", "node-1")
    cluster.nodes["node-1"]["Status"] = "down"

    moved = move_tenant(_api(cluster), INSTANCE, "", "t1")

    assert moved.node == "node-2"
    assert [m["agenthost.id"] for m in moved.moved] == ["web"]
    assert [(m["agenthost.id"], m["node"]) for m in moved.stranded] == [("db", "node-1")]
    assert cluster.registered == ["web"]
    assert _node_of(cluster.jobs["web"]) == "node-2"
    assert _node_of(cluster.jobs["db"]) == _node_of(cluster.jobs["other"]) == "node-1"  # t2 moves on its own
    assert cluster.vars[tenant_pin_path(INSTANCE, "t1")][0] == {
        "node": "node-2",
        "agenthost.tenant": "t1",
        "stranded": "node-1",
    }


async def test_a_tenant_goes_back_to_its_data_when_that_node_returns_unless_the_data_was_released() -> None:
    cluster = Cluster(2000, 2000)
    pin = tenant_pin_path(INSTANCE, "t1")
    cluster.pin(pin, "node-1")
    cluster.vars[volume_meta_path(INSTANCE, "db-vol")] = ({"node": "node-1", "agenthost.tenant": "t1"}, 1)
    cluster.job("web", "t1", "node-1")
    cluster.job("db", "t1", "node-1", volume="db-vol", kind="database")
    backend = NomadBackend(_api(cluster), INSTANCE, ["dc1"], "")
    cluster.nodes["node-1"]["Status"] = "down"
    assert await backend.relocate_tenants() == {
        "tenants_moved": 1,
        "workloads_moved": 1,
        "workloads_stranded": 1,
        "left_copies_removed": 0,
        "left_copies_failed": 0,
    }
    assert _node_of(cluster.jobs["web"]) == "node-2"

    cluster.nodes["node-1"]["Status"] = "ready"  # back, with the database's data
    assert (await backend.relocate_tenants())["tenants_moved"] == 1
    assert _node_of(cluster.jobs["web"]) == _node_of(cluster.jobs["db"]) == "node-1"
    assert cluster.vars[pin][0] == {"node": "node-1", "agenthost.tenant": "t1"}
    assert (await backend.relocate_tenants())["tenants_moved"] == 0

    cluster.nodes["node-1"]["Status"] = "down"
    await backend.relocate_tenants()
    assert await backend.release_volume("db-vol") == "node-1"  # restored elsewhere: no way back to node-1
    assert cluster.vars[pin][0] == {"node": "node-2", "agenthost.tenant": "t1"}
    cluster.nodes["node-1"]["Status"] = "ready"
    assert (await backend.relocate_tenants())["tenants_moved"] == 0
    assert _node_of(cluster.jobs["web"]) == "node-2"


def test_a_move_never_brings_back_a_job_deleted_or_stopped_while_it_ran_and_moves_an_updated_one_as_updated() -> None:
    """The reconciler's move reads the tenant's jobs, then registers each again: a delete_service that purges
    one in between must not see it come back (an orphan whose env Variable is gone), a stop must stay a stop,
    and an update made in between is moved as it now is, not as it was read."""
    cluster = Cluster(2000, 2000)
    cluster.pin(tenant_pin_path(INSTANCE, "t1"), "node-1")
    for jid in ("gone", "stopped", "updated"):
        cluster.job(jid, "t1", "node-1")
    cluster.nodes["node-1"]["Status"] = "down"

    def delete_stop_and_update() -> None:
        del cluster.jobs["gone"]
        for jid, change in (
            ("stopped", {"Stop": True}),
            ("updated", {"Meta": {**cluster.jobs["updated"]["Meta"], "v": "2"}}),
        ):
            cluster.index += 1
            cluster.jobs[jid] |= {**change, "JobModifyIndex": cluster.index}

    cluster.before_register = delete_stop_and_update
    moved = move_tenant(_api(cluster), INSTANCE, "", "t1")

    assert [m["agenthost.id"] for m in moved.moved] == ["updated"]
    assert "gone" not in cluster.jobs
    assert cluster.jobs["stopped"]["Stop"] and _node_of(cluster.jobs["stopped"]) == "node-1"
    assert cluster.jobs["updated"]["Meta"]["v"] == "2" and _node_of(cluster.jobs["updated"]) == "node-2"
    assert cluster.registered == ["updated"]


def test_a_tenant_moves_nowhere_when_no_node_is_usable() -> None:
    cluster = Cluster(2000, 2000)
    cluster.pin(tenant_pin_path(INSTANCE, "t1"), "node-1")
    cluster.nodes["node-1"]["Status"] = "down"
    cluster.nodes["node-2"]["Drain"] = True
    with pytest.raises(NoCapacity, match="no ready, eligible Nomad node"):
        move_tenant(_api(cluster), INSTANCE, "", "t1")
    assert cluster.vars[tenant_pin_path(INSTANCE, "t1")][0]["node"] == "node-1"


def test_a_stranded_database_says_where_its_data_is_and_a_lost_service_is_pending() -> None:
    cluster = Cluster(2000, 2000)
    cluster.pin(volume_meta_path(INSTANCE, "db-vol"), "node-1")
    cluster.job("db", "t1", "node-1", volume="db-vol", kind="database")
    cluster.job("web", "t1", "node-1")
    cluster.nodes["node-1"]["Status"] = "down"
    lost = [{"ClientStatus": "lost", "CreateIndex": 1}]
    exited = WorkloadStatus(id="x", state="exited", exit_code=0)

    db = lost_status(_api(cluster), INSTANCE, cluster.jobs["db"], lost, exited)
    assert db.state == "pending" and db.node_lost == "node-1"
    assert db.error is not None and "node-1, which is down" in db.error and "restore_backup" in db.error
    web = lost_status(_api(cluster), INSTANCE, cluster.jobs["web"], lost, exited)
    assert web.state == "pending" and web.node_lost is None and web.exit_code is None
    # Stopped (a move that failed gave it its copy back), it stays stopped and still says where its data is.
    cluster.jobs["db"]["Stop"] = True
    stopped = lost_status(_api(cluster), INSTANCE, cluster.jobs["db"], lost, exited)
    assert stopped.state == "exited" and stopped.node_lost == "node-1", stopped


def test_a_volume_is_released_only_from_a_node_that_cannot_run_it() -> None:
    cluster = Cluster(2000, 2000)
    path = volume_meta_path(INSTANCE, "db-vol")
    cluster.vars[path] = ({"node": "node-1", "path": "/data", "agenthost.tenant": "t1"}, 1)
    assert release_volume(_api(cluster), INSTANCE, "db-vol") is None  # node-1 is ready: its data is there
    assert cluster.vars[path][0]["node"] == "node-1"
    cluster.nodes["node-1"]["Status"] = "down"
    assert release_volume(_api(cluster), INSTANCE, "db-vol") == "node-1"
    assert cluster.vars[path][0] == {"agenthost.tenant": "t1"}
    assert release_volume(_api(cluster), INSTANCE, "db-vol") is None
    assert release_volume(_api(cluster), INSTANCE, "no-such") is None


async def test_a_volume_released_with_its_copy_kept_gets_it_back_or_gives_it_up() -> None:
    """A drain's data move keeps the drained node's copy until the data is safe elsewhere: a failed move makes
    it the volume's again (the tenant returns to it with the node), a successful one gives it up."""
    cluster = Cluster(2000, 2000)
    cluster.pin(tenant_pin_path(INSTANCE, "t1"), "node-2")
    path = volume_meta_path(INSTANCE, "db-vol")
    cluster.vars[path] = ({"node": "node-1", "path": "/data", "agenthost.tenant": "t1"}, 1)
    backend = NomadBackend(_api(cluster), INSTANCE, ["dc1"], "")
    cluster.nodes["node-1"]["Drain"] = True
    assert await backend.release_volume("db-vol", keep_copy=True) == "node-1"
    assert not [p for p in cluster.vars if "/leftovers/" in p]  # kept: nothing removes it
    cluster.vars[path] = ({"node": "node-2", "path": "/d2", "agenthost.tenant": "t1"}, 5)  # the fresh one
    await backend.reclaim_volume("db-vol", "node-1")
    assert cluster.vars[path][0] == {"node": "node-1", "agenthost.tenant": "t1"}
    assert cluster.vars[tenant_pin_path(INSTANCE, "t1")][0]["stranded"] == "node-1"
    cluster.nodes["node-1"]["Drain"] = False
    assert copies_to_remove(_api(cluster), INSTANCE) == [("db-vol", "node-2")]  # the fresh copy goes

    cluster.nodes["node-1"]["Drain"] = True
    for stub in [p for p in cluster.vars if "/leftovers/" in p]:
        del cluster.vars[stub]
    assert await backend.release_volume("db-vol", keep_copy=True) == "node-1"
    cluster.vars[path] = ({"node": "node-2", "agenthost.tenant": "t1"}, 7)  # moved, restored there
    await backend.drop_copy("db-vol", "node-1")
    cluster.nodes["node-1"]["Drain"] = False
    assert copies_to_remove(_api(cluster), INSTANCE) == [("db-vol", "node-1")]


async def test_a_drain_moves_the_tenants_first_then_drains_with_the_deadline() -> None:
    cluster = Cluster(2000, 2000)
    cluster.pin(tenant_pin_path(INSTANCE, "t1"), "node-1")
    cluster.pin(tenant_pin_path(INSTANCE, "t2"), "node-2")
    cluster.pin(volume_meta_path(INSTANCE, "db-vol"), "node-1")
    cluster.job("web", "t1", "node-1")
    cluster.job("db", "t1", "node-1", volume="db-vol", kind="database")
    cluster.job("far", "t2", "node-2")
    backend = NomadBackend(_api(cluster), INSTANCE, ["dc1"], "")

    report = await backend.drain_node("node-1", 120)

    assert report.moved_to == {"t1": "node-2"}
    assert [(w.id, w.tenant) for w in report.moved] == [("web", "t1")]
    assert [(w.id, w.kind, w.data_node) for w in report.stranded] == [("db", "database", "node-1")]
    assert cluster.drains == [("node-1", {"Deadline": 120 * 10**9, "IgnoreSystemJobs": True})]
    assert report.node.draining and not report.node.eligible
    assert _node_of(cluster.jobs["far"]) == "node-2" and cluster.registered == ["web"]
    with pytest.raises(InvalidInput, match="deadline_s"):
        await backend.drain_node("node-2", -1)


async def test_the_reconciler_pass_moves_tenants_off_down_or_draining_nodes_only() -> None:
    cluster = Cluster(2000, 2000, 2000)
    for tenant, node in (("down", "node-1"), ("idle", "node-2"), ("fine", "node-3")):
        cluster.pin(tenant_pin_path(INSTANCE, tenant), node)
        cluster.job(f"web-{tenant}", tenant, node)
    cluster.nodes["node-1"]["Status"] = "down"
    cluster.nodes["node-2"]["SchedulingEligibility"] = "ineligible"  # running work stays on an ineligible node
    backend = NomadBackend(_api(cluster), INSTANCE, ["dc1"], "")

    counts = await backend.relocate_tenants()

    assert counts == {"tenants_moved": 1, "workloads_moved": 1, "workloads_stranded": 0} | _NO_COPIES
    assert _node_of(cluster.jobs["web-down"]) == "node-3"
    assert _node_of(cluster.jobs["web-idle"]) == "node-2"
    assert (
        await backend.relocate_tenants()
        == {"tenants_moved": 0, "workloads_moved": 0, "workloads_stranded": 0} | _NO_COPIES
    )
    with anyio.fail_after(1):
        assert await backend.release_volume("none") is None


async def test_a_released_volume_s_copy_is_removed_only_once_its_node_is_back_and_the_volume_lives_elsewhere() -> None:
    """The lost node keeps the old data of a volume restored elsewhere: no record points to it, so the release
    remembers it, and the copy is removed once that node is ready while the volume lives on another node."""
    cluster = Cluster(2000, 2000, 2000)
    path = volume_meta_path(INSTANCE, "db-vol")
    cluster.vars[path] = ({"node": "node-1", "agenthost.tenant": "t1"}, 1)
    backend = NomadBackend(_api(cluster), INSTANCE, ["dc1"], "")
    cluster.nodes["node-1"]["Status"] = "down"
    assert await backend.release_volume("db-vol") == "node-1"
    assert copies_to_remove(_api(cluster), INSTANCE) == []  # released, placed nowhere yet, and node-1 is down

    cluster.vars[path] = ({"node": "node-2", "agenthost.tenant": "t1"}, 2)  # the restore placed it on node-2
    assert copies_to_remove(_api(cluster), INSTANCE) == []  # node-1 is still down
    cluster.nodes["node-1"]["Status"] = "ready"
    assert copies_to_remove(_api(cluster), INSTANCE) == [("db-vol", "node-1")]
    del cluster.vars[path]  # the volume was deleted since: its old copy goes all the same
    assert copies_to_remove(_api(cluster), INSTANCE) == [("db-vol", "node-1")]

    # Placed on node-1 again, the copy there is the volume itself: forgotten, never removed.
    cluster.vars[path] = ({"node": "node-1", "agenthost.tenant": "t1"}, 3)
    assert copies_to_remove(_api(cluster), INSTANCE) == []
    assert not [p for p in cluster.vars if "/leftovers/" in p]

    # A node that left the cluster took its copies with it.
    cluster.nodes["node-3"]["Status"] = "down"
    cluster.vars[path] = ({"node": "node-3", "agenthost.tenant": "t1"}, 4)
    assert await backend.release_volume("db-vol") == "node-3"
    del cluster.nodes["node-3"]
    assert copies_to_remove(_api(cluster), INSTANCE) == []
    assert not [p for p in cluster.vars if "/leftovers/" in p]
