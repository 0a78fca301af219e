"""What a Nomad job reserves, what a node has free, and the no_capacity error that names both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import pytest

from orchestrator.backends.base import NodeInfo, WorkloadSpec
from orchestrator.backends.nomad.allocs import await_placement
from orchestrator.backends.nomad.capacity import (
    job_reservation,
    memory_oversubscription,
    reservation,
    room,
)
from orchestrator.backends.nomad.jobs import job_variables
from orchestrator.backends.nomad.net import TenantNetworks
from orchestrator.backends.sizes import check_node_size
from orchestrator.errors import AgentHostError, NoCapacity, NotFound

pytestmark = pytest.mark.anyio

P = ParamSpec("P")
T = TypeVar("T")


def _spec(**kw: Any) -> WorkloadSpec:
    base: dict[str, Any] = {
        "id": "sbx_1",
        "kind": "sandbox",
        "tenant_id": "t_1",
        "image": "app:1",
        "memory_mb": 512,
        "cpus": 1.0,
        "runtime": "runsc",
        "egress": "none",
    }
    return WorkloadSpec(**{**base, **kw})


def test_a_workload_reserves_a_share_of_its_cpus_and_bursts_without_a_cap() -> None:
    shares = reservation(_spec(), 2600, cpu_share=0.1, memory_share=0.5, oversubscription=False)
    assert (shares.cpu_mhz, shares.cpu_hard_limit) == (260, False)
    assert (shares.memory_mb, shares.memory_max_mb) == (512, 0)  # no oversubscription: all memory reserved
    assert reservation(_spec(cpus=0.01), 2600, 0.1, 0.5, False).cpu_mhz == 20  # the floor
    assert reservation(_spec(cpus=0.005), 2600, 0.1, 0.5, False).cpu_mhz == 13  # never above the cpus asked
    full = reservation(_spec(), 2600, cpu_share=1, memory_share=0.5, oversubscription=False)
    assert (full.cpu_mhz, full.cpu_hard_limit) == (2600, True)  # a share of 1: all reserved, capped there


def test_memory_is_oversubscribed_only_where_the_cluster_allows_it_and_never_for_databases() -> None:
    shares = reservation(_spec(), 2600, 0.1, 0.5, oversubscription=True)
    assert (shares.memory_mb, shares.memory_max_mb) == (256, 512)
    db = reservation(_spec(kind="database"), 2600, 0.1, 0.5, oversubscription=True)
    assert (db.memory_mb, db.memory_max_mb) == (512, 0)
    small = reservation(_spec(memory_mb=40), 2600, 0.1, 0.5, oversubscription=True)
    assert (small.memory_mb, small.memory_max_mb) == (32, 40)  # the floor
    tiny = reservation(_spec(memory_mb=32), 2600, 0.1, 0.5, oversubscription=True)
    assert (tiny.memory_mb, tiny.memory_max_mb) == (32, 0)  # all of it: no max above it


def test_the_reservation_reaches_the_job_variables() -> None:
    nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="test")
    spec = _spec()
    shares = reservation(spec, 2600, 0.1, 0.5, oversubscription=True)
    values = job_variables(spec, cpu_mhz_per_core=2600, reserve=shares, datacenters=["dc1"], node_pool="p", nets=nets)
    assert (values["cpu_mhz"], values["cpu_hard_limit"]) == (260, False)
    assert (values["memory_mb"], values["memory_max_mb"]) == (256, 512)
    plain = job_variables(spec, cpu_mhz_per_core=2600, datacenters=["dc1"], node_pool="p", nets=nets)
    assert (plain["cpu_mhz"], plain["cpu_hard_limit"], plain["memory_mb"], plain["memory_max_mb"]) == (
        2600,
        True,
        512,
        0,
    )


class Cluster:
    """A fake Nomad API: one node of 2 cores at 2600 MHz and 4096 MB, three allocations on it, a job."""

    def __init__(self, oversubscription: bool = False, pool_override: bool | None = None) -> None:
        self.node = {
            "ID": "n1",
            "Name": "dev",
            "NodeResources": {"Cpu": {"CpuShares": 5200, "TotalCpuCores": 2}, "Memory": {"MemoryMB": 4096}},
            "ReservedResources": {"Cpu": {"CpuShares": 200}, "Memory": {"MemoryMB": 96}},
        }
        running = {"DesiredStatus": "run", "ClientStatus": "running"}
        self.allocs = [
            {  # a service with the net prestart task: the prestart task lends its share to main
                **running,
                "AllocatedResources": {
                    "Tasks": {
                        "main": {"Cpu": {"CpuShares": 4000}, "Memory": {"MemoryMB": 2000}},
                        "net": {"Cpu": {"CpuShares": 50}, "Memory": {"MemoryMB": 48}},
                    },
                    "TaskLifecycles": {"main": None, "net": {"Hook": "prestart", "Sidecar": False}},
                },
            },
            {  # stopped, and done: hold nothing
                "DesiredStatus": "stop",
                "ClientStatus": "running",
                "AllocatedResources": {"Tasks": {"main": {"Cpu": {"CpuShares": 999}, "Memory": {"MemoryMB": 999}}}},
            },
            {
                "DesiredStatus": "run",
                "ClientStatus": "complete",
                "AllocatedResources": {"Tasks": {"main": {"Cpu": {"CpuShares": 999}, "Memory": {"MemoryMB": 999}}}},
            },
        ]
        self.job = {
            "ID": "ah-svc_1",
            "NodePool": "default",
            "TaskGroups": [
                {
                    "Tasks": [
                        {"Name": "main", "Resources": {"CPU": 1300, "MemoryMB": 3000}},
                        {
                            "Name": "net",
                            "Resources": {"CPU": 50, "MemoryMB": 48},
                            "Lifecycle": {"Hook": "prestart", "Sidecar": False},
                        },
                    ]
                }
            ],
        }
        self.oversubscription = oversubscription
        self.pool_override = pool_override
        self.failed: dict[str, Any] = {}

    def get_blocking(self, *parts: str, index: int, wait_s: float, params: dict[str, Any] | None = None) -> Any:
        return self.get(*parts, params=params), index + 1

    def get(self, *parts: str, params: dict[str, Any] | None = None) -> Any:
        if parts == ("nodes",):
            return [
                {"ID": "n1", "Status": "ready", "SchedulingEligibility": "eligible", "NodePool": "default"},
                {"ID": "n2", "Status": "down", "SchedulingEligibility": "eligible", "NodePool": "default"},
            ]
        if parts == ("node", "n1"):
            return self.node
        if parts == ("node", "n1", "allocations"):
            return self.allocs
        if parts == ("job", "ah-svc_1"):
            return self.job
        if parts == ("evaluation", "e1"):
            return {"Status": "complete", "FailedTGAllocs": self.failed}
        if parts == ("operator", "scheduler", "configuration"):
            return {"SchedulerConfig": {"MemoryOversubscriptionEnabled": self.oversubscription}}
        if parts == ("node", "pools"):
            return [
                {"Name": "default", "SchedulerConfiguration": {"MemoryOversubscriptionEnabled": self.pool_override}}
            ]
        raise NotFound("/".join(parts))


async def _run(what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return fn(*args, **kwargs)


def test_a_node_has_free_what_its_running_allocations_do_not_hold() -> None:
    cluster = Cluster()
    free = room(cluster.node, cluster.allocs)
    assert (free.cpu_mhz, free.memory_mb) == (5000, 4000)  # less the operator's reservation
    assert (free.free_cpu_mhz, free.free_memory_mb) == (1000, 2000)  # the stopped and the done hold nothing
    assert free.mhz_per_core == 2600
    assert job_reservation(cluster.job) == (1300, 3000)


def test_the_cluster_or_the_node_pool_says_whether_memory_is_oversubscribed() -> None:
    api = cast(Any, Cluster(oversubscription=True))
    assert memory_oversubscription(api, "default") is True
    api.pool_override = False
    assert memory_oversubscription(api, "default") is False
    assert memory_oversubscription(cast(Any, Cluster(oversubscription=True)), "other") is True


async def test_a_full_cluster_is_no_capacity_with_what_is_asked_and_free_per_node() -> None:
    api = Cluster()
    api.failed = {
        "main": {
            "NodesAvailable": {"dc1": 1},
            "NodesEvaluated": 1,
            "NodesExhausted": 1,
            "DimensionExhausted": {"memory": 1},
        }
    }
    spec = _spec(id="svc_1", kind="service", memory_mb=3000, cpus=0.5)
    with pytest.raises(NoCapacity) as err:
        await await_placement(_run, cast(Any, api), "ah-svc_1", "e1", 0, spec)
    message = err.value.message
    assert err.value.code == "no_capacity" and err.value.status == 503
    assert "service svc_1 (limits 0.5 cpus, 3000 MB)" in message and "memory exhausted" in message
    assert "reserves 0.50 cores (1300 MHz) CPU and 3000 MB memory" in message
    assert "node dev: 0.38 cores (1000 MHz) of 1.92 cores and 2000 MB of 4000 MB memory" in message
    assert "memory_mb" in err.value.hint


async def test_a_placement_failure_that_is_not_about_room_keeps_its_own_error() -> None:
    api = Cluster()
    api.failed = {"main": {"NodesAvailable": {"dc1": 0}}}
    with pytest.raises(AgentHostError) as err:
        await await_placement(_run, cast(Any, api), "ah-svc_1", "e1", 0, _spec())
    assert not isinstance(err.value, NoCapacity) and "no Nomad client node" in err.value.message


def test_limits_beyond_every_node_are_no_capacity_before_anything_is_made() -> None:
    def node(name: str, cpus: float, memory_mb: int, status: str = "ready") -> NodeInfo:
        return NodeInfo(id=name, name=name, address="", status=status, eligible=True, cpus=cpus, memory_mb=memory_mb)

    nodes = [node("a", 2, 4096), node("b", 4, 2048), node("c", 64, 65536, status="down")]
    check_node_size(_spec(cpus=2, memory_mb=4096), nodes)
    check_node_size(_spec(cpus=4, memory_mb=2048), nodes)
    with pytest.raises(NoCapacity) as err:
        check_node_size(_spec(cpus=4, memory_mb=4096), nodes)  # each dimension fits some node, never both
    assert "asks for 4 cpus and 4096 MB" in err.value.message
    assert "node a: 2 cores, 4096 MB memory; node b: 4 cores, 2048 MB memory" in err.value.message
    assert "node c" not in err.value.message  # a node that is down offers nothing
    check_node_size(_spec(cpus=64), [node("c", 64, 65536, status="down")])  # no ready node: the engine says why
