"""agenthost on a real multi-node Nomad cluster (infra/nomad-testcluster.sh): one server, two clients each in its
own network namespace with its own dockerd, images pulled by digest from a TLS registry with credentials only
the nodes and the builder hold. Driven through MCP as an agent (and an operator) would."""

from __future__ import annotations

import json
import ssl
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import docker
import httpx
import pytest

from .conformance import answers
from .harness import EGRESS_PROBE, AgentHost, call, connect, make_repo, probe_results, untrusted_body, wait_for
from .nomad_cluster import GREETING_APP, Cluster, cluster_get, greeting_service, purge_jobs
from .proxy import running_ingress

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def _node_of(cluster: Cluster, service_id: str) -> str:
    """The name of the node the service's running allocation is on, from Nomad itself (an allocation an update
    replaced may run on for a moment after, told to stop)."""
    allocs = cluster_get(cluster, f"job/ah-{service_id}/allocations")
    (node,) = {a["NodeName"] for a in allocs if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"}
    return str(node)


def _networks(base_url: str | None, labels: list[str]) -> list[str]:
    engine = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
    try:
        return [n.name for n in engine.networks.list(filters={"label": labels})]
    finally:
        engine.close()


async def test_list_nodes_shows_the_two_clients(cluster_agenthost: AgentHost, nomad_cluster: Cluster) -> None:
    async with connect(cluster_agenthost, cluster_agenthost.admin_key, "stdio") as admin:
        nodes = (await call(admin, "list_nodes"))["nodes"]
        status = await call(admin, "platform_status")
    assert {n["name"]: n["address"] for n in nodes} == {name: a for name, (a, _, _) in nomad_cluster.nodes.items()}
    assert all(n["status"] == "ready" and n["eligible"] and "runsc" in n["runtimes"] for n in nodes), nodes
    assert status["cluster"]["nodes_eligible"] == 2, status["cluster"]
    # One server beside them: three agents in all.
    members = cluster_get(nomad_cluster, "agent/members")["Members"]
    assert [m["Tags"]["role"] for m in members] == ["nomad"] and members[0]["Status"] == "alive", members


async def test_services_run_on_each_client_from_the_registry_by_digest(
    cluster_agenthost: AgentHost, nomad_cluster: Cluster
) -> None:
    """A tenant's service lands on a node; with that node made ineligible another tenant's lands on the other (a
    tenant's services share one node). Each pulled the platform image by digest from the cluster registry,
    answers on its own node's address, and runs exec."""
    host = cluster_agenthost
    async with (
        connect(host, host.admin_key, "http") as admin,
        connect(host, host.tenant("cluster-spread"), "http") as one,
        connect(host, host.tenant("cluster-spread-2"), "http") as two,
    ):
        first = await call(one, "deploy_service", greeting_service(nomad_cluster, "one"))
        assert first["status"] == "running", first
        first_node = _node_of(nomad_cluster, first["id"])
        (node_id,) = [n["ID"] for n in cluster_get(nomad_cluster, "nodes") if n["Name"] == first_node]
        try:
            await call(admin, "set_node_eligibility", {"node": node_id, "eligible": False})
            second = await call(two, "deploy_service", greeting_service(nomad_cluster, "two"))
        finally:
            await call(admin, "set_node_eligibility", {"node": node_id, "eligible": True})
        assert second["status"] == "running", second
        second_node = _node_of(nomad_cluster, second["id"])
        assert {first_node, second_node} == set(nomad_cluster.nodes)
        for svc, node, client in ((first, first_node, one), (second, second_node, two)):
            assert urlsplit(svc["internal_url"]).hostname == nomad_cluster.nodes[node][0], svc
            assert await answers(svc["internal_url"]) == f"hello {svc['name']}"
            run = await call(client, "exec", {"service": svc["name"], "command": ["printenv", "GREETING"]})
            assert run["exit_code"] == 0 and untrusted_body(run["stdout"]).strip() == svc["name"], run
            (task,) = cluster_get(nomad_cluster, f"job/ah-{svc['id']}")["TaskGroups"][0]["Tasks"][-1:]
            image = task["Config"]["image"]
            assert image.startswith(f"{nomad_cluster.registry}/") and "@sha256:" in image, image
        # Each tenant's network was made by the dockerd of its own node (the net prestart task mounts the node's
        # socket), never on the other node's nor on the control plane's engine. Counted per tenant: this session's
        # other tests on the cluster (the conformance suite's) leave their tenants' bridges on the nodes.
        for node, tenant in ((first_node, "cluster-spread"), (second_node, "cluster-spread-2")):
            labels = [f"agenthost.instance={host.instance}", f"agenthost.tenant={host.tenant_ids[tenant]}"]
            labels.append("agenthost.nomad-network")
            made = {
                name: len(_networks(f"unix://{socket}", labels)) for name, (_, socket, _) in nomad_cluster.nodes.items()
            }
            assert made == {name: int(name == node) for name in nomad_cluster.nodes}, (tenant, made)
            assert _networks(None, labels) == []
        await call(one, "delete_service", {"service": "one", "confirm": True})
        await call(two, "delete_service", {"service": "two", "confirm": True})


async def test_a_workload_reaches_neither_the_registry_nor_the_control_plane(
    cluster_agenthost: AgentHost, nomad_cluster: Cluster
) -> None:
    """The attack: a tenant's service, on a node that holds the registry login, tries the registry, the Nomad
    server, its own node's Nomad client and dockerd-facing addresses, and the other node. It reaches none, holds
    no credential, and the registry refuses whoever has none (the nodes pull with theirs)."""
    host = cluster_agenthost
    password = (Path(nomad_cluster.docker_config).parent / "password").read_text().strip()
    async with connect(host, host.tenant("cluster-attack"), "http") as client:
        svc = await call(client, "deploy_service", greeting_service(nomad_cluster, "prober"))
        node = _node_of(nomad_cluster, svc["id"])
        own = nomad_cluster.nodes[node][0]
        (other,) = [address for name, (address, _, _) in nomad_cluster.nodes.items() if name != node]
        server = urlsplit(nomad_cluster.addr)
        targets = {
            "registry": nomad_cluster.registry,
            "server-http": f"{server.hostname}:{server.port}",
            "server-rpc": f"{server.hostname}:24647",
            "own-node-client": f"{own}:4646",
            "other-node-client": f"{other}:4646",
            "gateway-client": "gateway:4646",
        }
        run = await call(
            client,
            "exec",
            {
                "service": "prober",
                "command": ["python3", "-c", EGRESS_PROBE, *(f"{k}={v}" for k, v in targets.items())],
                "timeout_s": 120,
            },
        )
        results = probe_results(run["stdout"])
        assert set(results) == set(targets), run
        assert all(r.startswith("blocked") for r in results.values()), results
        env = await call(client, "exec", {"service": "prober", "command": ["sh", "-c", "env; cat /proc/1/environ"]})
        assert password not in env["stdout"] and "agenthost-node" not in env["stdout"]
        job = json.dumps(cluster_get(nomad_cluster, f"job/ah-{svc['id']}"))
        assert password not in job
        await call(client, "delete_service", {"service": "prober", "confirm": True})
    # The registry itself: TLS with the cluster's CA, and nothing for a caller without the login.
    trusted = ssl.create_default_context(cafile=nomad_cluster.ca)
    anonymous = httpx.get(f"https://{nomad_cluster.registry}/v2/_catalog", verify=trusted, timeout=10)
    assert anonymous.status_code == 401
    with pytest.raises(httpx.ConnectError):  # not trusted without the CA
        httpx.get(f"https://{nomad_cluster.registry}/v2/", timeout=10)
    wrong = httpx.get(
        f"https://{nomad_cluster.registry}/v2/_catalog",
        verify=trusted,
        auth=("agenthost-node", uuid.uuid4().hex),
        timeout=10,
    )
    assert wrong.status_code == 401
    login = httpx.get(
        f"https://{nomad_cluster.registry}/v2/_catalog",
        verify=trusted,
        auth=("agenthost-node", password),
        timeout=10,
    )
    assert "agenthost/python" in login.json()["repositories"], login.text


async def test_a_build_is_pushed_with_the_builders_login_and_pulled_by_a_node(
    cluster_agenthost: AgentHost, nomad_cluster: Cluster, repo_dir: Path
) -> None:
    """The builder (the control plane's dockerd) pushes to the TLS registry with its login; the deploy checks
    what the registry serves under the tag (CA and login of the control plane) and a node pulls it with its own."""
    host = cluster_agenthost
    marker = f"built-{uuid.uuid4().hex[:8]}"
    repo = make_repo(
        repo_dir / "app",
        {
            "app.py": GREETING_APP.replace("os.environ['GREETING']", repr(marker)),
            "Dockerfile": (
                f"FROM {host.settings.image_python}\nCOPY app.py /app/app.py\nEXPOSE 8000\n"
                'CMD ["python3", "/app/app.py"]\n'
            ),
        },
    )
    async with connect(host, host.tenant("cluster-build"), "http") as client:
        build = await call(client, "build_from_git", {"git_url": str(repo), "name": "web", "wait_timeout_s": 300})
        assert build["status"] == "succeeded", build
        assert build["image"].startswith(f"{nomad_cluster.registry}/"), build
        svc = await call(client, "deploy_service", {"name": "web", "build_id": build["id"]})
        assert svc["status"] == "running" and svc["image"] == build["image"], svc
        assert await answers(svc["internal_url"]) == f"hello {marker}"
        node = _node_of(nomad_cluster, svc["id"])
        _, socket, _ = nomad_cluster.nodes[node]
        pulled = docker.DockerClient(base_url=f"unix://{socket}")
        try:
            assert pulled.images.get(build["image"]).id  # the node's own engine holds it: it pulled
        finally:
            pulled.close()
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_the_https_route_follows_a_service_moved_to_the_other_node(
    nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The proxy on the control plane's host routes to the node the service runs on; when its node is drained
    (drain_node moves the tenant to the other node), the route follows to the new node by the next pass."""
    env = {**nomad_cluster.platform_env(), "AGENTHOST_RECONCILE_INTERVAL_S": "1"}
    with running_ingress(tmp_path_factory, env) as ingress:
        host = ingress.host
        try:
            async with (
                connect(host, host.admin_key, "stdio") as admin,
                connect(host, host.tenant("roaming"), "stdio") as client,
            ):
                svc = await call(client, "deploy_service", greeting_service(nomad_cluster, "roam"))
                url = ingress.url("roam", "roaming")
                assert svc["url"] == url and ingress.get(url) == (200, "hello roam")
                first = _node_of(nomad_cluster, svc["id"])
                (node_id,) = [n["ID"] for n in cluster_get(nomad_cluster, "nodes") if n["Name"] == first]
                drained = await call(admin, "drain_node", {"node": node_id, "deadline_s": 30})
                try:
                    assert [w["name"] for w in drained["moved"]] == ["roam"], drained

                    def moved() -> bool:
                        allocs = cluster_get(nomad_cluster, f"job/ah-{svc['id']}/allocations")
                        # The move is a deployment: done when nothing serves on the drained node any more.
                        nodes = {
                            a["NodeName"]
                            for a in allocs
                            if a["ClientStatus"] == "running" and a["DesiredStatus"] == "run"
                        }
                        return bool(nodes) and first not in nodes

                    wait_for(moved, 120, 0.5, "Nomad to place the service on the other node")

                    def served() -> tuple[int, str] | None:
                        answer = ingress.get(url)
                        return answer if answer == (200, "hello roam") else None

                    assert wait_for(served, 60, 0.5, "the route to follow it") == (200, "hello roam")
                    assert _node_of(nomad_cluster, svc["id"]) != first
                finally:
                    await call(admin, "set_node_eligibility", {"node": node_id, "eligible": True})
                await call(client, "delete_service", {"service": "roam", "confirm": True})
                assert ingress.get(url)[0] == 404
        finally:
            purge_jobs(nomad_cluster, host.instance, set(host.tenant_ids.values()))
