"""The platform's one-shot jobs on Nomad (``nomad/oneshot.nomad.hcl``): restic where a volume lives.

The job's env goes to its Variable ``nomad/jobs/<job id>`` before the job is registered and reaches
the task through a template, so no secret is ever part of the job Nomad stores and shows. A job that
mounts a placed volume is pinned to the volume's node; one whose volume has no node yet goes where
the scheduler finds room and the volume's record then names that node (check-and-set, as for
workloads), so a restore into a new volume works on any node. Job and Variable are purged at the end,
whatever happened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import NotFound
from ...labels import L_ID, L_INSTANCE, L_KIND, L_MANAGED, L_TENANT
from ..base import OneShotResult, OneShotSpec
from .allocs import Run, await_placement, await_stopped, job_allocs, register_job
from .jobs import (
    NOMAD_DIR,
    TASK,
    check_reference,
    check_volume_name,
    exit_info,
    job_id,
    latest_alloc,
    parse_job,
    variable_path,
)
from .logs import read_output
from .vars import delete_variable, put_variable
from .volume_jobs import node_known
from .volumes import NODE, docker_labels, pin_after_placement, volume_items

if TYPE_CHECKING:
    from .api import NomadApi
    from .volume_jobs import NodeJobs

__all__ = ["OneShots", "oneshot_job", "run_oneshot"]

log = logging.getLogger(__name__)

_TAIL_LINES = 400
_STOP_WAIT_S = 60.0


def oneshot_job(
    api: NomadApi, jobs: NodeJobs, instance: str, spec: OneShotSpec, node_id: str, labels: dict[str, str]
) -> dict[str, Any]:
    """The job Nomad parses for ``spec``; its env is not part of it. Raises: InvalidInput."""
    check_reference(spec.image)
    volumes = []
    if spec.volume is not None:
        check_volume_name(spec.volume.name)
        volumes.append(
            {"source": spec.volume.name, "path": spec.volume.path, "read_only": spec.volume.read_only, "labels": labels}
        )
    variables = {
        "image": spec.image,
        "datacenters": jobs.datacenters,
        "node_pool": jobs.node_pool,
        "node_id": node_id,
        "args": spec.argv,
        "network_mode": spec.network,
        "cap_add": spec.cap_add,
        "memory_mb": spec.memory_mb,
        "binaries": [{"host": host, "path": path} for path, host in spec.binaries.items()],
        "volumes": volumes,
    }
    # Kind "job": the platform's own short-lived work, which the reconciler never takes for an orphan.
    meta = {L_MANAGED: "true", L_INSTANCE: instance, L_ID: spec.id, L_KIND: "job", L_TENANT: spec.tenant_id}
    hcl = (NOMAD_DIR / "oneshot.nomad.hcl").read_text()
    return parse_job(api, hcl, variables, job_id(spec.id), meta)


async def _placement(run: Run, api: NomadApi, instance: str, spec: OneShotSpec) -> tuple[str, dict[str, str]]:
    """The node of the job's volume ('' when it has none yet) and the volume's Docker labels."""
    if spec.volume is None:
        return "", {}
    name = spec.volume.name
    items = await run(f"inspect volume {name}", volume_items, api, instance, name)
    if items is None:
        raise NotFound(f"volume {name} does not exist")
    node_id = items.get(NODE, "")
    if node_id and not await run(f"inspect the node of volume {name}", node_known, api, name, node_id):
        raise NotFound(f"volume {name} was on node {node_id}, which left the cluster")
    return node_id, docker_labels(items)


def _outcome(api: NomadApi, jid: str) -> OneShotResult:
    alloc = latest_alloc(job_allocs(api, jid))
    if alloc is None:
        return OneShotResult(exit_code=None, stdout="", stderr="no allocation")
    code, _ = exit_info((alloc.get("TaskStates") or {}).get(TASK) or {})
    out, err = (
        "\n".join(line.text for line in read_output(api, alloc["ID"], stream, _TAIL_LINES))
        for stream in ("stdout", "stderr")
    )
    return OneShotResult(exit_code=code, stdout=out, stderr=err, node=str(alloc["NodeID"]))


def _purge(api: NomadApi, jid: str, variable: str) -> None:
    try:
        api.delete("job", jid, params={"purge": "true"})
    except NotFound:
        pass
    delete_variable(api, variable)


async def run_oneshot(run: Run, api: NomadApi, jobs: NodeJobs, instance: str, spec: OneShotSpec) -> OneShotResult:
    """Backend.run_oneshot on Nomad. Raises: NotFound, BackendUnavailable, InvalidInput."""
    jid, variable = job_id(spec.id), variable_path(spec.id)
    node_id, labels = await _placement(run, api, instance, spec)
    job = await run(f"parse job {jid}", oneshot_job, api, jobs, instance, spec, node_id, labels)
    try:
        await run(f"write the env of {jid}", put_variable, api, variable, dict(spec.env))
        eval_id, version = await run(f"start job {jid}", register_job, api, job)
        await await_placement(run, api, jid, eval_id, version, None)
        if spec.volume is not None and not node_id:
            volume = spec.volume.name
            await run(
                f"record the node of volume {volume}",
                pin_after_placement,
                api,
                instance,
                [volume],
                jid,
                version,
                {volume: labels},
            )
        finished = not await await_stopped(run, api, jid, spec.timeout_s)
        if not finished:
            await run(f"stop job {jid}", api.delete, "job", jid)
            await await_stopped(run, api, jid, _STOP_WAIT_S)
        result = await run(f"read job {jid}", _outcome, api, jid)
        return result if finished else result.model_copy(update={"exit_code": None})
    finally:
        with anyio.CancelScope(shield=True):
            await run(f"remove job {jid}", _purge, api, jid, variable)


class OneShots:
    """The backend's part: its volumes live on the nodes, so work on their files runs there (``run_oneshot``)."""

    local_volumes = False
    api: NomadApi
    node_jobs: NodeJobs
    instance: str
    _run: Run

    async def run_oneshot(self, spec: OneShotSpec) -> OneShotResult:
        return await run_oneshot(self._run, self.api, self.node_jobs, self.instance, spec)
