"""The three-node Nomad cluster for e2e tests (infra/nomad-testcluster.sh): one server on a bridge address,
two clients each in its own network namespace with its own dockerd, and a TLS registry they pull from. ACLs,
mutual TLS and gossip encryption are on: agenthost holds a client token of nomad/agenthost-policy.hcl and its own
certificate; the helpers here act as the cluster's operator (the management token, the operator's certificate)."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import docker
import httpx

from orchestrator.settings import Settings

from .harness import AgentHost

__all__ = [
    "BRIDGE_HOST",
    "GREETING_APP",
    "Cluster",
    "greeting_service",
    "kill_client_agent",
    "node_ids",
    "cannot_run",
    "cluster_state_dir",
    "cluster_env",
    "cluster_get",
    "cluster_host",
    "cluster_request",
    "node_engine",
    "operator_client",
    "purge_jobs",
    "push_images",
    "registry_client",
    "start_cluster",
    "stop_cluster",
    "until_value",
]

T = TypeVar("T")

_SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "nomad-testcluster.sh"
_SPAWN = _SCRIPT.with_name("spawn.sh")
_STATE = Path(os.environ.get("AGENTHOST_CACHE_DIR", Path.home() / ".cache" / "agenthost")) / "nomad-cluster"
BRIDGE_HOST = "10.89.0.1"  # the host on the cluster's bridge: the only host address the nodes reach


def cluster_state_dir() -> Path:
    """Where infra/nomad-testcluster.sh keeps the cluster's state and its agents' logs while it runs."""
    return _STATE


@dataclass(frozen=True)
class Cluster:
    addr: str  # the server's HTTP API
    registry: str  # host:port of the TLS registry
    docker_config: str  # a docker client config dir holding the registry login (the nodes' and builder's)
    ca: str  # the cluster's CA: it signed the registry's certificate and every Nomad agent's
    nodes: dict[str, tuple[str, str, str]]  # node name -> (address, dockerd socket, network namespace)
    images: dict[str, str]  # platform image -> its reference by digest in the cluster registry
    namespace: str  # agenthost's Nomad namespace
    token: str  # agenthost's ACL token (nomad/agenthost-policy.hcl)
    client_cert: tuple[str, str]  # agenthost's client certificate and key
    management_token: str  # the bootstrap token: the operator's, never agenthost's
    operator_cert: tuple[str, str]  # the operator's client certificate and key

    def platform_env(self) -> dict[str, str]:
        """What an agenthost on this cluster runs with: its images by digest from the cluster registry, whose
        login only the builder (DOCKER_CONFIG) and the nodes hold; no warm sandboxes."""
        settings = Settings()
        return {
            "AGENTHOST_BACKEND": "nomad",
            "AGENTHOST_NOMAD_ADDR": self.addr,
            "AGENTHOST_NOMAD_TOKEN": self.token,
            "AGENTHOST_NOMAD_NAMESPACE": self.namespace,
            "AGENTHOST_NOMAD_CACERT": self.ca,
            "AGENTHOST_NOMAD_CLIENT_CERT": self.client_cert[0],
            "AGENTHOST_NOMAD_CLIENT_KEY": self.client_cert[1],
            "AGENTHOST_REGISTRY": self.registry,
            "AGENTHOST_IMAGE_PYTHON": self.images[settings.image_python],
            "AGENTHOST_IMAGE_BASE": self.images[settings.image_base],
            "AGENTHOST_IMAGE_POSTGRES": self.images[settings.image_postgres],
            "AGENTHOST_IMAGE_REDIS": self.images[settings.image_redis],
            "AGENTHOST_REGISTRY_CA_FILE": self.ca,
            "AGENTHOST_SANDBOX_POOL_SIZE": "0",
            "DOCKER_CONFIG": self.docker_config,
        }


def _script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(_SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def cannot_run() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "the Nomad test cluster needs root (network namespaces, a bridge, dockerd per node)"
    for tool in ("ip", "nsenter", "unshare", "dockerd", "docker-registry", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; run `bash infra/setup.sh`"
    return None


def start_cluster() -> bool:
    """Start the cluster unless it is up; True when this call started it. Raises RuntimeError when it fails."""
    if _script("status").returncode == 0:
        return False
    proc = _script("start")
    if proc.returncode != 0:
        raise RuntimeError(
            f"infra/nomad-testcluster.sh start failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}\n"
            f"its output:\n{proc.stdout[-2000:]}"
        )
    return True


def stop_cluster() -> None:
    _script("stop")


def push_images(images: list[str]) -> dict[str, str]:
    """Push local images to the cluster registry: {image: reference by digest}."""
    proc = _script("push", *images)
    if proc.returncode != 0:
        raise RuntimeError(f"pushing {images} to the cluster registry failed:\n{proc.stderr[-3000:]}")
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.strip())


def registry_client(cluster: Cluster) -> httpx.Client:
    """A client of the cluster registry's API with the login the nodes and the builder hold."""
    password = (Path(cluster.docker_config).parent / "password").read_text().strip()
    return httpx.Client(
        base_url=f"https://{cluster.registry}/v2/",
        verify=ssl.create_default_context(cafile=cluster.ca),
        auth=("agenthost-node", password),
        timeout=10,
    )


_ENGINES: dict[str, docker.DockerClient] = {}


def node_engine(cluster: Cluster, node: str) -> docker.DockerClient:
    """The node's own dockerd (one client per node for the session: the containers it returns keep using it)."""
    socket = cluster.nodes[node][1]
    if socket not in _ENGINES:
        _ENGINES[socket] = docker.DockerClient(base_url=f"unix://{socket}")
    return _ENGINES[socket]


def cluster_env(images: dict[str, str]) -> Cluster:
    values = dict(line.split("=", 1) for line in _script("env").stdout.splitlines() if "=" in line)
    nodes = {}
    for key, value in values.items():
        if key.startswith("CLUSTER_NODE_"):
            address, socket, netns = value.split(" ")
            nodes[f"ahcl-{key.rsplit('_', 1)[1].lower()}"] = (address, socket, netns)
    return Cluster(
        addr=values["CLUSTER_ADDR"],
        registry=values["CLUSTER_REGISTRY"],
        docker_config=values["CLUSTER_DOCKER_CONFIG"],
        ca=values["CLUSTER_CA"],
        nodes=nodes,
        images=images,
        namespace=values["CLUSTER_NAMESPACE"],
        token=values["CLUSTER_TOKEN"],
        client_cert=(values["CLUSTER_CLIENT_CERT"], values["CLUSTER_CLIENT_KEY"]),
        management_token=Path(values["CLUSTER_MANAGEMENT_TOKEN_FILE"]).read_text().strip(),
        operator_cert=(values["CLUSTER_OPERATOR_CERT"], values["CLUSTER_OPERATOR_KEY"]),
    )


def operator_client(
    cluster: Cluster, token: str | None = "management", cert: tuple[str, str] | None = None, ca: str | None = None
) -> httpx.Client:
    """A client of the server's API: by default the operator's (the CA, its certificate, the management token);
    ``token`` None sends none, ``cert``/``ca`` replace the operator's certificate or the cluster's CA."""
    context = ssl.create_default_context(cafile=ca or cluster.ca)
    certfile, keyfile = cert or cluster.operator_cert
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    headers = {"X-Nomad-Token": cluster.management_token if token == "management" else token} if token else {}
    return httpx.Client(base_url=f"{cluster.addr}/v1/", verify=context, headers=headers, timeout=30)


def cluster_request(cluster: Cluster, method: str, path: str, json: Any = None, **params: Any) -> Any:
    """The operator's call to the server's API, in agenthost's namespace unless ``namespace`` is given."""
    params.setdefault("namespace", cluster.namespace)
    with operator_client(cluster) as client:
        response = client.request(method, path, params=params, json=json)
    response.raise_for_status()
    return response.json() if response.content else None


def cluster_get(cluster: Cluster, path: str, **params: Any) -> Any:
    return cluster_request(cluster, "GET", path, **params)


def purge_jobs(cluster: Cluster, instance: str, tenants: set[str]) -> None:
    """Remove the jobs (and their env Variables) a platform instance or its tenants left on the cluster."""
    for job in cluster_get(cluster, "jobs", meta="true"):
        meta = job.get("Meta") or {}
        if meta.get("agenthost.tenant") in tenants or meta.get("agenthost.instance") == instance:
            cluster_request(cluster, "DELETE", f"job/{job['ID']}", purge="true")
            with operator_client(cluster) as client:  # a job may have had no env
                client.delete(f"var/nomad/jobs/{job['ID']}", params={"namespace": cluster.namespace})


# A service for the cluster's tests: says which greeting it was given, on port 8000.
GREETING_APP = textwrap.dedent(
    """
    import os, http.server
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello {os.environ['GREETING']}".encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
)


def greeting_service(cluster: Cluster, name: str) -> dict[str, Any]:
    """deploy_service's arguments for GREETING_APP named ``name`` in the platform's python image (by digest)."""
    image = next(ref for local, ref in cluster.images.items() if "python" in local)
    return {
        "name": name,
        "image": image,
        "command": ["python3", "-c", GREETING_APP],
        "port": 8000,
        "env": {"GREETING": name},
        "memory_mb": 128,
    }


def node_ids(cluster: Cluster) -> dict[str, str]:
    """Node name -> id."""
    return {n["Name"]: n["ID"] for n in cluster_get(cluster, "nodes")}


def kill_client_agent(node: str) -> None:
    """SIGKILL the Nomad agent of client ``node`` (its node stops heartbeating); start_cluster brings it back."""
    pidfile = _STATE / node.removeprefix("ahcl-") / "nomad.pid"
    # Its pid alone may name another process by now: infra/spawn.sh knows the process it started.
    spawned = subprocess.run(["bash", "-c", f". {_SPAWN} && spawned {pidfile}"], timeout=30)
    assert spawned.returncode == 0, f"the Nomad agent of {node} is not running"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


async def until_value(check: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    """Ask the product again until ``check`` gives an answer; fail after ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            while (value := await check()) is None:
                await anyio.sleep(0.5)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
    return value


@contextmanager
def cluster_host(cluster: Cluster, data_dir: Path, **env: str) -> Iterator[AgentHost]:
    """An agenthost on the cluster (``platform_env`` and ``env``) while the block runs; then its jobs purged."""
    host = AgentHost(data_dir=data_dir, env={**cluster.platform_env(), **env})
    try:
        host.init()
        yield host
    finally:
        host.stop()
        purge_jobs(cluster, host.instance, set(host.tenant_ids.values()))
