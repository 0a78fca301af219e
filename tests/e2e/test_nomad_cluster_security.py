"""The cluster's own security (nomad/README.md, "Security"), attacked as an outsider and as a thief of agenthost's
token would: the API speaks only mutual TLS, nobody without a token reads anything, and agenthost's token
(nomad/agenthost-policy.hcl) reaches neither other namespaces nor the ACL system, cannot widen itself, and cannot
run a privileged task, a task with capabilities or a driver other than docker. What the token must be able to do
is proved by test_nomad_cluster.py, which runs agenthost with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import wait_for
from .nomad_cluster import Cluster, cluster_get, cluster_request, operator_client

pytestmark = [pytest.mark.e2e]


def _job(job_id: str, namespace: str, image: str, **task_config: Any) -> dict[str, Any]:
    """A batch job of one docker task that fails at once and is never retried."""
    return {
        "Job": {
            "ID": job_id,
            "Name": job_id,
            "Namespace": namespace,
            "Type": "batch",
            "Datacenters": ["*"],
            "TaskGroups": [
                {
                    "Name": "g",
                    "Count": 1,
                    "RestartPolicy": {"Attempts": 0, "Mode": "fail"},
                    "ReschedulePolicy": {"Attempts": 0, "Unlimited": False},
                    "Tasks": [
                        {
                            "Name": "t",
                            "Driver": task_config.pop("driver", "docker"),
                            "Config": {"image": image, "command": "true", **task_config},
                            "Resources": {"CPU": 50, "MemoryMB": 32},
                        }
                    ],
                }
            ],
        }
    }


def _image(cluster: Cluster) -> str:
    return next(ref for local, ref in cluster.images.items() if "python" in local)


@pytest.fixture
def as_agenthost(nomad_cluster: Cluster) -> Iterator[httpx.Client]:
    """The API as whoever holds agenthost's token and certificate."""
    with operator_client(nomad_cluster, token=nomad_cluster.token, cert=nomad_cluster.client_cert) as client:
        yield client


@pytest.fixture
def foreign_job(nomad_cluster: Cluster) -> Iterator[str]:
    """A job of another team in the default namespace (it never places: no node has its meta) and a Variable of
    theirs of the same name."""
    job_id = f"other-team-{uuid.uuid4().hex[:8]}"
    job = _job(job_id, "default", "busybox")
    job["Job"]["Constraints"] = [{"LTarget": "${meta.other-team}", "RTarget": "yes", "Operand": "="}]
    with operator_client(nomad_cluster) as op:
        op.post("jobs", json=job).raise_for_status()
    body = {"Namespace": "default", "Path": job_id, "Items": {"password": "theirs"}}
    cluster_request(nomad_cluster, "PUT", f"var/{job_id}", json=body, namespace="default")
    yield job_id
    cluster_request(nomad_cluster, "DELETE", f"job/{job_id}", namespace="default", purge="true")
    cluster_request(nomad_cluster, "DELETE", f"var/{job_id}", namespace="default")


def test_the_api_speaks_only_mutual_tls(nomad_cluster: Cluster) -> None:
    """Plain HTTP gets no answer from Nomad, a client without a certificate is cut off in the handshake, and a
    client that does not trust the cluster's CA does not send its token to whoever answers."""
    plain = httpx.get(nomad_cluster.addr.replace("https://", "http://") + "/v1/status/leader", timeout=10)
    assert plain.status_code == 400 and "HTTPS" in plain.text, plain.text
    with operator_client(nomad_cluster, cert=("", "")) as no_cert, pytest.raises(httpx.TransportError):
        no_cert.get("status/leader")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{nomad_cluster.addr}/v1/status/leader", timeout=10)
    with operator_client(nomad_cluster) as op:
        assert op.get("status/leader").json().endswith(":24647")


def test_without_a_token_nothing_is_readable(nomad_cluster: Cluster) -> None:
    path = f"agenthost/probe-{uuid.uuid4().hex[:8]}"
    body = {"Namespace": nomad_cluster.namespace, "Path": path, "Items": {"secret": "s3cret"}}
    cluster_request(nomad_cluster, "PUT", f"var/{path}", json=body)
    try:
        with operator_client(nomad_cluster, token=None) as anonymous:
            own = {"namespace": nomad_cluster.namespace}
            for endpoint in ("jobs", "nodes", "agent/self", f"var/{path}", "operator/scheduler/configuration"):
                response = anonymous.get(endpoint, params=own)
                assert response.status_code == 403, (endpoint, response.status_code, response.text)
            for endpoint in ("vars", "acl/policies"):  # lists Nomad filters down to what the caller may see
                listed = anonymous.get(endpoint, params={"namespace": "*"})
                assert listed.status_code == 200 and listed.json() == [], (endpoint, listed.text)
    finally:
        cluster_request(nomad_cluster, "DELETE", f"var/{path}")


def test_agenthosts_token_stays_in_its_namespace(
    nomad_cluster: Cluster, as_agenthost: httpx.Client, foreign_job: str
) -> None:
    """Another namespace's jobs are neither readable, listable, stoppable nor joinable by a job of agenthost's."""
    ns = {"namespace": "default"}
    assert as_agenthost.get(f"job/{foreign_job}", params=ns).status_code == 403
    assert as_agenthost.delete(f"job/{foreign_job}", params=ns).status_code == 403
    assert as_agenthost.get("jobs", params=ns).status_code == 403
    listed = as_agenthost.get("jobs", params={"namespace": "*"})
    assert listed.status_code == 200 and all(j["Namespace"] == nomad_cluster.namespace for j in listed.json())
    planted = _job(f"ah-planted-{uuid.uuid4().hex[:8]}", "default", "busybox")
    assert as_agenthost.post("jobs", json=planted, params=ns).status_code == 403
    listed_vars = as_agenthost.get("vars", params=ns)  # filtered: the other team's Variable is not listed
    assert listed_vars.status_code == 200 and listed_vars.json() == [], listed_vars.text
    assert as_agenthost.get(f"var/{foreign_job}", params=ns).status_code == 403
    assert as_agenthost.put("var/x", params=ns, json={"Path": "x", "Items": {"a": "b"}}).status_code == 403
    # In its own namespace, only its own Variable paths.
    own = {"namespace": nomad_cluster.namespace}
    for path in ("nomad/jobs/other-team", "secrets/x"):
        body = {"Namespace": nomad_cluster.namespace, "Path": path, "Items": {"a": "b"}}
        assert as_agenthost.put(f"var/{path}", params=own, json=body).status_code == 403, path
    assert foreign_job in {j["ID"] for j in cluster_get(nomad_cluster, "jobs", namespace="default")}


def test_agenthosts_token_cannot_widen_itself(as_agenthost: httpx.Client) -> None:
    """No ACL management, no new namespace or node pool, no scheduler or agent changes, not even a look at the
    gossip keyring. (Nomad 1.6.1 checks no ACL on /v1/agent/join: what keeps a rogue agent out is the gossip
    key and the RPC certificates, nomad/README.md, "Security".)"""
    refused = [
        ("GET", "acl/tokens", None),
        ("POST", "acl/token", {"Name": "mine", "Type": "management"}),
        ("POST", "acl/policy/mine", {"Name": "mine", "Rules": 'namespace "*" { policy = "write" }'}),
        ("POST", "namespace/mine", {"Name": "mine"}),
        ("POST", "node/pools", {"Name": "mine"}),
        ("POST", "operator/scheduler/configuration", {"MemoryOversubscriptionEnabled": False}),
        ("GET", "agent/keyring/list", None),
        ("PUT", "agent/force-leave?node=ahcl-server.global", None),
        ("PUT", "system/gc", None),
    ]
    for method, path, body in refused:
        response = as_agenthost.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.status_code, response.text)
    # Of the ACL system it sees its own policy only.
    assert [p["Name"] for p in as_agenthost.get("acl/policies").json()] == ["agenthost"]
    # What it needs of the cluster beyond its namespace stays readable.
    for path in ("nodes", "agent/self", "operator/scheduler/configuration", "node/pools"):
        assert as_agenthost.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("task", "refusal"),
    [({"privileged": True}, "privileged"), ({"cap_add": ["sys_admin"]}, "capabilities")],
    ids=["privileged", "cap_add"],
)
def test_a_stolen_token_runs_no_privileged_task(
    nomad_cluster: Cluster, as_agenthost: httpx.Client, task: dict[str, Any], refusal: str
) -> None:
    """The nodes' docker plugin refuses privileged containers and any added capability but the backup job's three
    (chown, dac_override, fowner), whatever a job submitted with agenthost's token asks for."""
    job_id = f"ah-attack-{uuid.uuid4().hex[:8]}"
    job = _job(job_id, nomad_cluster.namespace, _image(nomad_cluster), **task)
    submitted = as_agenthost.post("jobs", json=job, params={"namespace": nomad_cluster.namespace})
    assert submitted.status_code == 200, submitted.text
    try:

        def failure() -> str | None:
            for alloc in cluster_get(nomad_cluster, f"job/{job_id}/allocations"):
                events = ((alloc.get("TaskStates") or {}).get("t") or {}).get("Events") or []
                for event in events:
                    if event["Type"] == "Driver Failure":
                        return str(event.get("DisplayMessage") or event.get("DriverError"))
            return None

        message = wait_for(failure, 180, 0.5, f"the {refusal} task to be refused")
        assert refusal in message, message
    finally:
        cluster_request(nomad_cluster, "DELETE", f"job/{job_id}", purge="true")


def test_the_nodes_run_no_driver_but_docker(nomad_cluster: Cluster, as_agenthost: httpx.Client) -> None:
    """A raw_exec job (a process on the node, outside any container) has nowhere to run."""
    job_id = f"ah-attack-{uuid.uuid4().hex[:8]}"
    job = _job(job_id, nomad_cluster.namespace, _image(nomad_cluster), driver="raw_exec")
    plan = as_agenthost.post(f"job/{job_id}/plan", json=job, params={"namespace": nomad_cluster.namespace})
    assert plan.status_code == 200, plan.text
    failed = plan.json()["FailedTGAllocs"]["g"]
    assert "missing drivers" in failed["ConstraintFiltered"], failed
