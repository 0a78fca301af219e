"""Changes of a running workload the Nomad way: deployments, job versions and in-place restarts.

- An update of a service job is a Nomad deployment (the ``update`` block of ``workload.nomad.hcl``):
  ``follow_deployment`` watches it with blocking queries until it succeeded, or failed and Nomad reverted
  the job to its last stable version, and says which.
- Going back to a spec that ran before (a rollback, or undoing a failed update) reverts the job to the
  stable version that ran it (``version_of``, by the spec hash in each version's meta) rather than
  registering it anew; Nomad keeps a few versions only, so a pruned one is registered again.
- A restart restarts the task in its allocation (``restart_in_place``). Nomad counts that in the task's
  restarts; the Variable records how many of them a caller asked for (``asked_restarts``), so a workload's
  ``restarts`` counts crashes only, as on Docker.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ...errors import AgentHostError, BackendUnavailable, WorkloadFailed
from .allocs import WAIT_S, Run, await_evaluation, await_placement, job_allocs
from .jobs import TASK, latest_alloc, task_failure

if TYPE_CHECKING:
    from ..base import WorkloadSpec
    from .api import NomadApi

__all__ = [
    "ASKED_ITEM",
    "SPEC_META",
    "asked_restarts",
    "follow_deployment",
    "force_reschedule",
    "restart_in_place",
    "revert_job",
    "version_of",
    "with_asked_restart",
]

SPEC_META = "agenthost.nomad-spec-hash"  # which spec a job version runs (env included: the hash covers it)
ASKED_ITEM = "AGENTHOST_RESTARTS_ASKED"  # "<allocation id> <n>": restarts of that allocation a caller asked for
_DONE = ("successful", "failed", "cancelled")
_RESTART_WAIT_S = 60.0


def version_of(versions: list[dict[str, Any]], spec_hash: str, current: int) -> int | None:
    """The newest job version other than ``current`` that ran the spec ``spec_hash``, if Nomad kept one.

    Stable or not: the hash names exactly the spec wanted, and a version whose deployment was cut short by
    the next update (a deploy followed at once by an update) never became stable, yet ran that spec."""
    found = [
        int(v["Version"])
        for v in versions
        if int(v["Version"]) != current and (v.get("Meta") or {}).get(SPEC_META) == spec_hash
    ]
    return max(found, default=None)


def revert_job(api: NomadApi, jid: str, version: int, current: int) -> tuple[str, int]:
    """Revert ``jid`` to ``version`` (only while ``current`` is still its version); the evaluation and the
    version the revert made."""
    body = {"JobID": jid, "JobVersion": version, "EnforcePriorVersion": current}
    result = api.post("job", jid, "revert", body=body)
    return str(result.get("EvalID") or ""), int(api.get("job", jid)["Version"])


def force_reschedule(api: NomadApi, jid: str) -> str:
    """Have Nomad replace the job's failed allocation (its restarts were used up); the evaluation id."""
    body = {"JobID": jid, "EvalOptions": {"ForceReschedule": True}}
    return str(api.post("job", jid, "evaluate", body=body).get("EvalID") or "")


def asked_restarts(items: dict[str, str]) -> tuple[str, int] | None:
    alloc, _, count = items.get(ASKED_ITEM, "").partition(" ")
    return (alloc, int(count)) if alloc and count.isdigit() else None


def with_asked_restart(items: dict[str, str], alloc_id: str) -> dict[str, str]:
    """``items`` with one more restart of ``alloc_id`` asked for."""
    asked = asked_restarts(items)
    count = asked[1] if asked and asked[0] == alloc_id else 0
    return {**items, ASKED_ITEM: f"{alloc_id} {count + 1}"}


async def restart_in_place(run: Run, api: NomadApi, alloc: dict[str, Any]) -> None:
    """Restart the main task in its allocation and wait until it runs again.

    Raises: BackendUnavailable when it does not run again within a minute."""
    alloc_id = str(alloc["ID"])
    before = int(((alloc.get("TaskStates") or {}).get(TASK) or {}).get("Restarts") or 0)
    await run(
        f"restart allocation {alloc_id[:8]}",
        api.post,
        "client",
        "allocation",
        alloc_id,
        "restart",
        body={"TaskName": TASK},
    )
    deadline = time.monotonic() + _RESTART_WAIT_S
    index = 0
    while time.monotonic() < deadline:
        current, index = await run(
            f"read allocation {alloc_id[:8]}", api.get_blocking, "allocation", alloc_id, index=index, wait_s=WAIT_S
        )
        task = (current.get("TaskStates") or {}).get(TASK) or {}
        if current.get("ClientStatus") in ("complete", "failed", "lost"):
            return  # it crashed on the way up: its status says so
        if int(task.get("Restarts") or 0) > before and task.get("State") == "running":
            return
    raise BackendUnavailable(
        f"allocation {alloc_id[:8]} did not run again within {_RESTART_WAIT_S:.0f} s of its restart",
        "get_service shows its state; its node may be slow (list_nodes)",
    )


async def follow_deployment(
    run: Run, api: NomadApi, jid: str, eval_id: str, version: int, spec: WorkloadSpec, deadline_s: float
) -> str:
    """Wait until the deployment of ``version`` is done; returns what it was ("deployment 1a2b3c4d successful").

    A deployment that does not finish by ``deadline_s`` (or whose new allocation cannot be placed) is failed
    here, which makes Nomad revert the job as it does for an unhealthy one.

    Raises: WorkloadFailed when it failed (with Nomad's reason and the new allocation's), NoCapacity and the
    other placement errors of ``await_evaluation``.
    """
    deadline = time.monotonic() + deadline_s
    try:
        await await_evaluation(run, api, jid, eval_id, spec, deadline)
    except AgentHostError:
        await _fail(run, api, jid, version)
        raise
    deps: list[dict[str, Any]] = await run(f"list deployments of {jid}", api.get, "job", jid, "deployments")
    found = next((d for d in deps if int(d.get("JobVersion", -1)) == version), None)
    if found is None:  # an in-place change makes none: the allocation running is all there is to wait for
        await await_placement(run, api, jid, "", version, spec)
        return f"version {version} placed"
    dep_id, index = str(found["ID"]), 0
    dep: dict[str, Any] = found
    while time.monotonic() < deadline:
        dep, index = await run(
            f"follow deployment {dep_id[:8]}", api.get_blocking, "deployment", dep_id, index=index, wait_s=WAIT_S
        )
        status = str(dep.get("Status"))
        if status == "successful":
            return f"Nomad deployment {dep_id[:8]} of version {version} successful"
        if status in _DONE:
            raise await _failure(run, api, jid, version, dep)
    await run(f"fail deployment {dep_id[:8]}", api.post, "deployment", "fail", dep_id)
    raise await _failure(run, api, jid, version, {**dep, "Status": "failed", "StatusDescription": "it took too long"})


async def _fail(run: Run, api: NomadApi, jid: str, version: int) -> dict[str, Any] | None:
    """Fail the deployment of ``version`` while it runs (Nomad then reverts the job); the deployment, if any."""
    dep: dict[str, Any] | None = await run(f"read the deployment of {jid}", api.get, "job", jid, "deployment")
    if dep and int(dep.get("JobVersion", -1)) == version and dep.get("Status") not in _DONE:
        await run(f"fail the deployment of {jid}", api.post, "deployment", "fail", str(dep["ID"]))
    return dep if dep and int(dep.get("JobVersion", -1)) == version else None


async def _failure(run: Run, api: NomadApi, jid: str, version: int, dep: dict[str, Any]) -> WorkloadFailed:
    allocs = await run(f"list allocations of {jid}", job_allocs, api, jid)
    alloc = latest_alloc([a for a in allocs if int(a.get("JobVersion", -1)) == version])
    why = ""
    if alloc is not None:
        why = task_failure(alloc) or ""
        if not why and (alloc.get("DeploymentStatus") or {}).get("Healthy") is False:
            why = "it did not become healthy (its health check failed, or it exited)"
    text = f"Nomad deployment {str(dep.get('ID', ''))[:8]} of version {version} {dep.get('Status')}"
    text += f": {dep.get('StatusDescription') or 'no reason given'}"
    return WorkloadFailed(
        text + (f"; the new allocation: {why}" if why else ""),
        "Nomad reverted the job to its last stable version, which keeps serving; fix the new image, command "
        "or env and update again",
    )
