"""Pure logic of the Nomad backend: what reaches the job template, and how allocations read back."""

from __future__ import annotations

import pytest
import requests.exceptions

from orchestrator.backends.base import VolumeSpec, WorkloadSpec
from orchestrator.backends.nomad.api import nomad_errors
from orchestrator.backends.nomad.jobs import HASH_ITEM, check_reference, job_variables, status_from
from orchestrator.backends.nomad.net import TenantNetworks
from orchestrator.backends.nomad.nodes import node_info, placement_error
from orchestrator.errors import AgentHostError, Conflict, InvalidInput, RuntimeUnavailable


def _spec(**kw: object) -> WorkloadSpec:
    base: dict[str, object] = {
        "id": "svc_1",
        "kind": "service",
        "tenant_id": "t_1",
        "image": "app:1",
        "memory_mb": 128,
        "cpus": 0.5,
        "runtime": "runsc",
        "ports": [8000],
        "env": {"SECRET": "v"},
    }
    return WorkloadSpec(**{**base, **kw})  # type: ignore[arg-type]


def _vars(spec: WorkloadSpec) -> dict[str, object]:
    nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="test")
    return job_variables(spec, cpu_mhz_per_core=2000, datacenters=["dc1"], node_pool="default", nets=nets)


def test_env_never_reaches_the_job_variables() -> None:
    values = _vars(_spec(env={"SECRET": "hunter2-value"}))
    assert "hunter2-value" not in repr(values) and "SECRET" not in repr(values)


def test_cpus_become_a_hard_quota_in_mhz_and_kinds_pick_the_job_type() -> None:
    assert _vars(_spec(cpus=0.5))["cpu_mhz"] == 1000
    assert _vars(_spec(kind="sandbox", ports=[], egress="none"))["job_type"] == "batch"
    assert _vars(_spec(kind="sandbox", ports=[], egress="none"))["network_mode"] == "none"
    assert _vars(_spec(volumes=[VolumeSpec(name="ah-t_1-data", path="/data")]))["volumes"] == [
        {"source": "ah-t_1-data", "path": "/data", "read_only": False, "labels": {}}
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"image": 'app:1"\n}'},
        {"image": "app:${attr.kernel.name}"},
        {"command": ["sh", "-c", "echo ${node.unique.name}"]},
        {"workdir": "/srv/${NOMAD_ALLOC_ID}"},
        {"egress": "web"},
        {"egress": "none"},  # with a published port
        {"env": {"BIG": "<" * (70 * 1024)}},
    ],
)
def test_what_nomad_cannot_do_safely_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        _vars(_spec(**change))


def test_image_references() -> None:
    for ok in ("app:1", "registry.local:5000/team/app:v2", "127.0.0.1:5000/x", "a/b@sha256:" + "0" * 64):
        check_reference(ok)
    for bad in ("App:1", "app:1 --x", "app:1\n", "", "app::1"):
        with pytest.raises(InvalidInput):
            check_reference(bad)


def test_status_reads_the_latest_allocation() -> None:
    job = {"Meta": {"agenthost.tenant": "t_1", "agenthost.nomad-env-index": "7"}}
    old = {"CreateIndex": 1, "ClientStatus": "complete", "TaskStates": {}}
    new = {
        "CreateIndex": 5,
        "ClientStatus": "running",
        "TaskStates": {
            "main": {
                "State": "running",
                "Restarts": 2,
                "StartedAt": "2026-01-02T03:04:05.123456789Z",
                "Events": [{"Type": "Terminated", "Details": {"exit_code": "3"}}],
            }
        },
        "AllocatedResources": {
            "Shared": {"Ports": [{"Label": "p8000", "Value": 23000, "To": 8000, "HostIP": "127.0.0.1"}]}
        },
    }
    st = status_from("svc_1", job, [new, old], "h")
    assert st.state == "running" and st.restarts == 2 and st.exit_code == 3 and st.spec_hash == "h"
    assert st.endpoints[8000].port == 23000 and st.labels == {"agenthost.tenant": "t_1"}
    assert status_from("svc_1", None, [], None).state == "missing"
    assert status_from("svc_1", {"Stop": True}, [], None).state == "exited"
    assert HASH_ITEM.startswith("AGENTHOST_")


def test_health_is_nomad_s_verdict_on_an_allocation_in_a_deployment_only() -> None:
    running = {"ID": "a", "ClientStatus": "running", "TaskStates": {"main": {"State": "running"}}}
    in_deployment = {**running, "DeploymentID": "d"}
    verdicts = [
        (running, None),  # placed outside a deployment (a replacement for a lost node's): the platform probes
        (in_deployment, "pending"),
        ({**in_deployment, "DeploymentStatus": {"Healthy": True}}, "healthy"),
        ({**in_deployment, "DeploymentStatus": {"Healthy": False}}, "unhealthy"),
    ]
    # A verdict older than the task's last start (a restart since) no longer says how it is now.
    started = {"main": {"State": "running", "StartedAt": "2026-01-02T03:04:06.5Z"}}
    verdict = {"Healthy": True, "Timestamp": "2026-01-02T03:04:05.9Z"}
    restarted = {**in_deployment, "TaskStates": started, "DeploymentStatus": verdict}
    verdicts += [
        (restarted, None),
        ({**restarted, "DeploymentStatus": {**verdict, "Timestamp": "2026-01-02T03:04:07Z"}}, "healthy"),
    ]
    for alloc, health in verdicts:
        assert status_from("svc_1", {"Meta": {}}, [alloc], "h").health == health, alloc


def test_a_first_deployment_is_healthy_once_its_check_passes_and_an_update_must_stay_healthy_a_while() -> None:
    nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="test")
    first = job_variables(_spec(), cpu_mhz_per_core=2000, datacenters=["dc1"], node_pool="p", nets=nets, first=True)
    update = job_variables(_spec(), cpu_mhz_per_core=2000, datacenters=["dc1"], node_pool="p", nets=nets)
    assert (first["update_min_healthy_s"], update["update_min_healthy_s"]) == (0, 3)


def test_nodes_offer_only_the_runtimes_their_plugin_allows() -> None:
    node = {
        "ID": "n1",
        "Name": "a",
        "Status": "ready",
        "SchedulingEligibility": "eligible",
        "Attributes": {"unique.network.ip-address": "10.0.0.5"},
        "NodeResources": {"Cpu": {"CpuShares": 4000, "TotalCpuCores": 2}, "Memory": {"MemoryMB": 2048}},
        "Drivers": {
            "docker": {
                "Detected": True,
                "Healthy": True,
                "Attributes": {"driver.docker.runtimes": "runc,runsc,sysbox-runc"},
            }
        },
        "Meta": {"agenthost.runtimes": "runc,runsc"},
    }
    info, mhz = node_info(node)
    assert info.runtimes == ["runc", "runsc"] and mhz == 2000 and info.address == "10.0.0.5"
    assert node_info({**node, "Meta": {}})[0].runtimes == ["runc"]
    failed = {
        "main": {
            "NodesAvailable": {"dc1": 1},
            "ConstraintFiltered": {"${meta.agenthost.runtimes} set_contains sysbox-runc": 1},
        }
    }
    assert isinstance(placement_error(failed, "sysbox-runc"), RuntimeUnavailable)


def test_a_workload_with_volumes_goes_to_their_node() -> None:
    nets = TenantNetworks(helper_image="agenthost/python:bookworm", instance="test")
    spec = _spec(volumes=[VolumeSpec(name="ah-t_1-data", path="/data", read_only=True)])
    labels = {"ah-t_1-data": {"agenthost.instance": "test", "agenthost.tenant": "t_1"}}
    values = job_variables(
        spec,
        cpu_mhz_per_core=2000,
        datacenters=["dc1"],
        node_pool="default",
        nets=nets,
        volume_node="node-a",
        volume_labels=labels,
    )
    assert values["node_id"] == "node-a"
    assert values["volumes"] == [
        {"source": "ah-t_1-data", "path": "/data", "read_only": True, "labels": labels["ah-t_1-data"]}
    ]
    assert _vars(spec)["node_id"] == ""  # before the first placement the scheduler picks
    with pytest.raises(InvalidInput):
        _vars(_spec(volumes=[VolumeSpec(name="/etc", path="/data")]))  # a host path is no volume name


def test_a_pinned_node_that_cannot_take_the_job_is_named() -> None:
    failed = {"main": {"NodesAvailable": {"dc1": 2}, "ConstraintFiltered": {"${node.unique.id} = node-a": 1}}}
    error = placement_error(failed, "runsc")
    assert "pinned" in error.message and "list_nodes" in error.hint


def test_an_answer_that_is_not_json_is_not_called_unreachable() -> None:
    with pytest.raises(AgentHostError) as err, nomad_errors("GET /v1/volumes"):
        raise requests.exceptions.JSONDecodeError("Expecting value", "", 0)
    assert type(err.value) is AgentHostError and "not JSON" in err.value.message and "version" in err.value.hint


def test_a_register_refused_for_a_changed_job_modify_index_is_a_conflict() -> None:
    """Nomad answers a check-and-set register of a job that changed (or was purged) with a 500 naming the index."""
    from nomad.api import exceptions as nomad_exc

    resp = requests.Response()
    resp.status_code = 500
    resp._content = b"Enforcing job modify index 42: job does not exist"
    with pytest.raises(Conflict) as err, nomad_errors("POST /v1/jobs"):
        raise nomad_exc.BaseNomadException(resp)
    assert "changed concurrently" in err.value.message and "job does not exist" in err.value.message
