"""Work on the node that holds a volume: a short batch job (``nomad/volume.nomad.hcl``) with that node's Docker socket.

The control plane has no socket of the nodes' Docker, so what only the node can do runs there as
the platform's own script: ``path`` finds (or makes) the volume and answers its mountpoint,
``remove`` deletes it once no container uses it any more. Both refuse a volume of that name that
carries no label of this platform instance. Each API call runs in a worker thread (``run``:
``NomadBackend._run``); the waits for the job sleep in the event loop between them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import AgentHostError, BackendUnavailable, Conflict, NotFound
from ...labels import L_ID, L_INSTANCE, L_KIND, L_MANAGED
from .allocs import Run, await_placement, await_stopped, job_allocs, register_job
from .jobs import NOMAD_DIR, job_id, latest_alloc, parse_job, status_from
from .logs import read_output
from .node_scripts import ENGINE_API
from .vars import delete_variable
from .volumes import NODE, PATH, claim_node, docker_labels, volume_items, volume_meta_path

if TYPE_CHECKING:
    from .api import NomadApi

__all__ = ["NodeJobs", "node_known", "remove_copy", "remove_volume", "volume_path"]

_FINISH_WAIT_S = 120.0
# Runs on the node with its Docker socket. Nomad replaces ${...} in a task's args at run time, so
# this text must never hold a dollar-brace pair. An in-use volume (a container of a job that was
# just stopped, which the docker driver removes a moment later) is tried again for a minute.
_SCRIPT = (
    ENGINE_API
    + r"""
import sys, time, urllib.parse
op, name, instance, labels = sys.argv[1:5]
path = "/volumes/" + urllib.parse.quote(name, safe="")
status, vol = api("GET", path)
if status == 200 and (vol.get("Labels") or {}).get("agenthost.instance") != instance:
    sys.exit("volume %s on this node is not this platform's" % name)
if status not in (200, 404):
    sys.exit("cannot inspect volume %s: %s %s" % (name, status, vol))
if op == "path":
    if status == 404:
        status, vol = api("POST", "/volumes/create", {"Name": name, "Labels": json.loads(labels)})
        if status not in (200, 201):
            sys.exit("cannot create volume %s: %s %s" % (name, status, vol))
    print(json.dumps({"mountpoint": vol["Mountpoint"]}))
    sys.exit(0)
removed = False
deadline = time.monotonic() + 60
while status == 200:
    code, out = api("DELETE", path)
    if code in (204, 404):
        removed = code == 204
        break
    if code != 409 or time.monotonic() > deadline:
        sys.exit("cannot remove volume %s: %s %s" % (name, code, out))
    time.sleep(0.5)
print(json.dumps({"removed": removed}))
"""
)


@dataclass(frozen=True)
class NodeJobs:
    """What the platform's own batch jobs need: an image with python3, and where the scheduler may put them."""

    image: str
    datacenters: list[str]
    node_pool: str


def _job(api: NomadApi, jobs: NodeJobs, instance: str, workload_id: str, args: list[str], node_id: str) -> Any:
    variables = {
        "image": jobs.image,
        "datacenters": jobs.datacenters,
        "node_pool": jobs.node_pool,
        "node_id": node_id,
        "args": args,
    }
    # Kind "job": the platform's own short-lived work, which the reconciler never takes for an orphan.
    meta = {L_MANAGED: "true", L_INSTANCE: instance, L_ID: workload_id, L_KIND: "job"}
    return parse_job(api, (NOMAD_DIR / "volume.nomad.hcl").read_text(), variables, job_id(workload_id), meta)


async def _run_script(
    run: Run, api: NomadApi, jobs: NodeJobs, instance: str, op: str, name: str, labels: dict[str, str], node_id: str
) -> tuple[str, dict[str, Any]]:
    """Run the script's ``op`` for volume ``name`` on ``node_id`` (any node when empty).

    Returns the node it ran on and the script's answer. Raises: AgentHostError with the script's
    message when it failed, BackendUnavailable when it did not finish in time.
    """
    workload_id = "vol_" + uuid.uuid4().hex[:12]
    jid = job_id(workload_id)
    args = ["python3", "-c", _SCRIPT, op, name, instance, json.dumps(labels)]
    try:

        def submit() -> tuple[str, int]:
            return register_job(api, _job(api, jobs, instance, workload_id, args, node_id))

        eval_id, version = await run(f"start the job for volume {name}", submit)
        await await_placement(run, api, jid, eval_id, version, None)
        await await_stopped(run, api, jid, _FINISH_WAIT_S)
        return await run(f"read the job for volume {name}", _outcome, api, workload_id, name)
    finally:
        with anyio.CancelScope(shield=True):
            await run(f"remove the job for volume {name}", _purge, api, jid)


def _outcome(api: NomadApi, workload_id: str, name: str) -> tuple[str, dict[str, Any]]:
    jid = job_id(workload_id)
    allocs = job_allocs(api, jid)
    alloc = latest_alloc(allocs)
    status = status_from(workload_id, {"ID": jid}, allocs, None)
    if alloc is None or status.state != "exited":
        raise BackendUnavailable(
            f"the job that works on volume {name} did not finish within {_FINISH_WAIT_S:.0f} s",
            "platform_status shows the cluster; retry",
        )
    node = str(alloc["NodeID"])
    if status.exit_code != 0:
        lines = read_output(api, alloc["ID"], "stderr", 5)
        reason = " ".join(line.text for line in lines) or status.error or f"exit code {status.exit_code}"
        raise AgentHostError(f"volume {name} on node {node}: {reason}")
    out = read_output(api, alloc["ID"], "stdout", 1)
    answer: dict[str, Any] = json.loads(out[-1].text) if out else {}
    return node, answer


def _purge(api: NomadApi, jid: str) -> None:
    try:
        api.delete("job", jid, params={"purge": "true"})
    except NotFound:
        pass


def node_known(api: NomadApi, name: str, node_id: str) -> bool:
    """Whether Nomad still knows the node that holds volume ``name`` (a node it forgot took its volumes
    with it). Raises: BackendUnavailable when the node is known but not ready."""
    try:
        node: dict[str, Any] = api.get("node", node_id)
    except NotFound:
        return False
    if node.get("Status") != "ready":
        raise BackendUnavailable(
            f"volume {name} is on node {node_id}, which is {node.get('Status')}", "bring the node back, then retry"
        )
    return True


async def volume_path(run: Run, api: NomadApi, jobs: NodeJobs, instance: str, name: str) -> str:
    """The directory on its node that holds volume ``name``; a volume not placed yet is made on a node now.

    Raises: NotFound when the volume is not this platform's or its node left the cluster;
    BackendUnavailable when its node is down; Conflict when it was placed elsewhere meanwhile.
    """
    items = await run(f"inspect volume {name}", volume_items, api, instance, name)
    if items is None:
        raise NotFound(f"volume {name} does not exist")
    if items.get(PATH):
        return items[PATH]
    node_id = items.get(NODE, "")
    if node_id and not await run(f"inspect the node of volume {name}", node_known, api, name, node_id):
        raise NotFound(f"volume {name} was on node {node_id}, which left the cluster")
    node, answer = await _run_script(run, api, jobs, instance, "path", name, docker_labels(items), node_id)
    path = str(answer["mountpoint"])
    if await run(f"record volume {name}", claim_node, api, instance, name, node, path) != node:
        raise Conflict(f"volume {name} was placed on another node meanwhile", "retry")
    return path


async def remove_volume(run: Run, api: NomadApi, jobs: NodeJobs, instance: str, name: str) -> bool:
    """Remove volume ``name`` from its node and forget it; False when it is not this platform's.

    Raises: BackendUnavailable when the node that holds it is down (the record stays, so a retry
    finds it); AgentHostError when a container still uses it after a minute.
    """
    items = await run(f"inspect volume {name}", volume_items, api, instance, name)
    if items is None:
        return False
    node_id = items.get(NODE, "")
    if bool(node_id) and await run(f"inspect the node of volume {name}", node_known, api, name, node_id):
        await _run_script(run, api, jobs, instance, "remove", name, {}, node_id)
    await run(f"forget volume {name}", delete_variable, api, volume_meta_path(instance, name))
    return True


async def remove_copy(run: Run, api: NomadApi, jobs: NodeJobs, instance: str, name: str, node_id: str) -> bool:
    """Remove the Docker volume ``name`` from node ``node_id`` whatever the record says (a copy left there);
    False when there was none. Raises: AgentHostError when it is not this platform's or still in use."""
    _, answer = await _run_script(run, api, jobs, instance, "remove", name, {}, node_id)
    return bool(answer.get("removed"))
