"""The Nomad dev agent for e2e tests (infra/nomad.sh) and helpers to look at what agenthost made in it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx

from orchestrator.backends.base import Backend
from orchestrator.platform import instance_id, make_backend
from orchestrator.secrets import load_master_key

from .harness import AgentHost

__all__ = [
    "NOMAD_DEV_SIZES",
    "NOMAD_ADDR",
    "backend_of",
    "node_volumes",
    "nomad_get",
    "purge_tenants",
    "remove_node_volumes",
    "remove_tenant_networks",
    "start_dev_agent",
    "stop_dev_agent",
]

# The default sizes fit on the two-core dev node: a job reserves a tenth of its cpus (docs/backends.md,
# "Capacity on Nomad"). One warm sandbox, not two, to spare the machine.
NOMAD_DEV_SIZES = {"AGENTHOST_SANDBOX_POOL_SIZE": "1"}

NOMAD_ADDR = "http://127.0.0.1:14646"
_SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "nomad.sh"


def _script(cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(_SCRIPT), cmd], capture_output=True, text=True, timeout=900)


def start_dev_agent() -> bool:
    """Start the dev agent unless it answers already; True when this call started it."""
    if _script("status").returncode == 0:
        return False
    proc = _script("start")
    if proc.returncode != 0:
        raise RuntimeError(f"infra/nomad.sh start failed:\n{proc.stderr[-3000:]}")
    return True


def stop_dev_agent() -> None:
    _script("stop")


def nomad_get(path: str, **params: Any) -> Any:
    response = httpx.get(f"{NOMAD_ADDR}/v1/{path}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def backend_of(host: AgentHost, instance: str | None = None) -> Backend:
    """The backend `agenthost serve` on this data dir uses (its instance id), to look at what the product made.

    Protocol-level tests pass their own ``instance``: the server's reconciler would rightly remove
    workloads of its instance that have no record, as orphans.
    """
    return make_backend(host.settings, instance or instance_id(load_master_key(host.settings.master_key_path)))


def purge_tenants(host: AgentHost) -> None:
    """Remove whatever this session's platform and tenants left in Nomad (a test that failed half-way,
    the warm pool) and the tenant networks its jobs made on the node."""
    tenants = set(host.tenant_ids.values())
    for job in nomad_get("jobs", meta="true"):
        meta = job.get("Meta") or {}
        if meta.get("agenthost.tenant") in tenants or meta.get("agenthost.instance") == host.instance:
            httpx.delete(f"{NOMAD_ADDR}/v1/job/{job['ID']}", params={"purge": "true"}, timeout=30)
            httpx.delete(f"{NOMAD_ADDR}/v1/var/nomad/jobs/{job['ID']}", timeout=30)
    remove_tenant_networks(host.instance)
    for stub in nomad_get("vars", prefix=f"agenthost/{host.instance}/volumes/"):
        httpx.delete(f"{NOMAD_ADDR}/v1/var/{stub['Path']}", timeout=30)
    remove_node_volumes(host.instance)


def _remove_all(items: list[Any], timeout: float) -> None:
    """Remove each Docker object, waiting (bounded) for the containers that still use it to go."""
    deadline = time.monotonic() + timeout
    for item in items:
        while True:
            try:
                item.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def remove_tenant_networks(instance: str, timeout: float = 60) -> None:
    """The tenant bridges jobs of ``instance`` made on the (single) dev node, once their containers are gone."""
    client = docker.from_env(version="auto")
    try:
        labels = [f"agenthost.instance={instance}", "agenthost.nomad-network"]
        _remove_all(client.networks.list(filters={"label": labels}), timeout)
    finally:
        client.close()


def node_volumes(instance: str) -> list[str]:
    """Names of the Docker volumes the Nomad backend of ``instance`` has on the (single) dev node."""
    client = docker.from_env(version="auto")
    try:
        return sorted(v.name for v in client.volumes.list(filters={"label": f"agenthost.instance={instance}"}))
    finally:
        client.close()


def remove_node_volumes(instance: str, timeout: float = 60) -> None:
    """The Docker volumes jobs of ``instance`` made on the (single) dev node, once their containers are gone."""
    client = docker.from_env(version="auto")
    try:
        _remove_all(client.volumes.list(filters={"label": f"agenthost.instance={instance}"}), timeout)
    finally:
        client.close()


def job_json(job_id: str) -> str:
    """Everything Nomad stores about a job's definition, every version, as one JSON text."""
    return json.dumps([nomad_get(f"job/{job_id}"), nomad_get(f"job/{job_id}/versions")])
