"""Pure logic of Nomad rollouts: which updates get a canary and which health gate, which job version a
rollback reverts to, which allocation stands for a workload mid-deployment, and restarts a caller asked for
not counted as crashes."""

from __future__ import annotations

from typing import Any

from orchestrator.backends.base import HealthCheck, VolumeSpec, WorkloadSpec
from orchestrator.backends.nomad.jobs import job_variables, serving_alloc, status_from
from orchestrator.backends.nomad.net import TenantNetworks
from orchestrator.backends.nomad.rollouts import SPEC_META, asked_restarts, version_of, with_asked_restart


def _spec(**kw: Any) -> WorkloadSpec:
    base: dict[str, Any] = {"id": "svc_1", "kind": "service", "tenant_id": "t_1", "image": "app:1"}
    return WorkloadSpec(**{**base, "memory_mb": 128, "cpus": 0.5, "runtime": "runsc", "ports": [8000], **kw})


def _update(spec: WorkloadSpec, deadline_s: float = 45.0) -> tuple[object, ...]:
    nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="test")
    values = job_variables(
        spec,
        cpu_mhz_per_core=2000,
        datacenters=["dc1"],
        node_pool="default",
        nets=nets,
        healthy_deadline_s=deadline_s,
    )
    return values["update_canary"], values["update_health"], values["update_healthy_deadline_s"]


def test_a_service_update_is_a_canary_gated_by_its_check_a_database_is_replaced() -> None:
    assert _update(_spec(health_check=HealthCheck(type="http", path="/up"))) == (1, "checks", 45)
    assert _update(_spec(health_check=None)) == (1, "task_states", 45)
    assert _update(_spec(health_check=HealthCheck(type="none"))) == (1, "task_states", 45)
    assert _update(_spec(health_check=HealthCheck(), ports=[])) == (1, "task_states", 45)
    # Two instances on one volume never run side by side.
    volume = [VolumeSpec(name="ah-t_1-data", path="/data")]
    assert _update(_spec(kind="database", volumes=volume, health_check=HealthCheck(type="tcp"))) == (0, "checks", 45)
    assert _update(_spec(volumes=volume))[0] == 0
    assert _update(_spec(), deadline_s=3)[2] == 10  # Nomad needs room for min_healthy_time


def _version(n: int, spec_hash: str, stable: bool = True) -> dict[str, Any]:
    return {"Version": n, "Stable": stable, "Meta": {SPEC_META: spec_hash}}


def test_a_rollback_reverts_to_the_newest_version_that_ran_the_spec() -> None:
    versions = [_version(4, "b"), _version(3, "a", stable=False), _version(2, "a"), _version(1, "a"), _version(0, "c")]
    assert version_of(versions, "a", current=4) == 3  # the newest, healthy or not: it is the same spec
    assert version_of(versions, "b", current=4) is None  # it runs already: nothing to revert to
    assert version_of(versions, "z", current=4) is None  # pruned or never run: registered instead
    assert version_of([{"Version": 1, "Stable": True, "Meta": None}], "a", current=2) is None


def _alloc(id_: str, index: int, desired: str = "run", canary: bool = False, **kw: Any) -> dict[str, Any]:
    task = {"State": "running", "Restarts": kw.pop("restarts", 0)}
    alloc = {"ID": id_, "CreateIndex": index, "DesiredStatus": desired, "ClientStatus": "running"}
    return {**alloc, "DeploymentStatus": {"Canary": canary}, "TaskStates": {"main": task}, **kw}


def test_the_previous_version_stands_for_the_workload_until_the_canary_is_promoted() -> None:
    old, canary = _alloc("old", 1), _alloc("new", 2, canary=True)
    assert serving_alloc([old, canary])["ID"] == "old"  # type: ignore[index]
    # Promoted: the old one is stopped, the canary is the workload.
    assert serving_alloc([_alloc("old", 1, desired="stop"), canary])["ID"] == "new"  # type: ignore[index]
    # Reverted: the canary is stopped, the old one serves on.
    assert serving_alloc([old, _alloc("new", 2, desired="stop", canary=True)])["ID"] == "old"  # type: ignore[index]
    stopped = [_alloc("a", 1, desired="stop"), _alloc("b", 2, desired="stop")]
    assert serving_alloc(stopped)["ID"] == "b"  # type: ignore[index]
    assert serving_alloc([]) is None


def test_restarts_a_caller_asked_for_are_no_crashes() -> None:
    items = with_asked_restart({"AGENTHOST_SPEC_HASH": "h"}, "a1")
    items = with_asked_restart(items, "a1")
    assert asked_restarts(items) == ("a1", 2)
    assert asked_restarts(with_asked_restart(items, "a2")) == ("a2", 1)  # a new allocation counts afresh
    assert asked_restarts({}) is None and asked_restarts({"AGENTHOST_RESTARTS_ASKED": "junk"}) is None
    job = {"Meta": {}}
    assert status_from("svc_1", job, [_alloc("a1", 1, restarts=3)], "h", ("a1", 2)).restarts == 1  # one crash
    assert status_from("svc_1", job, [_alloc("a1", 1, restarts=3)], "h", ("a0", 2)).restarts == 3
    assert status_from("svc_1", job, [_alloc("a1", 1, restarts=1)], "h", ("a1", 2)).restarts == 0
