"""A job's allocations: listing them, and waiting until Nomad placed and started a job, or stopped it.

Nomad answers a job registration with an evaluation; the scheduler's verdict and the task's
start come later. The waits here turn that into one call that returns once the task runs (or
ran) and raises the agenthost error an agent can act on when it cannot. They are blocking queries
(``?index=N&wait=2s``): Nomad answers as soon as what is watched changes. Each holds a worker thread
(``run``: ``NomadBackend._run``) for at most ``WAIT_S``, so a slow placement never sits on one for
long and a tenant's share of threads frees up every few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from ...errors import AgentHostError, BackendUnavailable, ImageNotFound
from .capacity import job_reservation, no_capacity, rooms
from .jobs import TASK, latest_alloc, task_failure
from .logs import read_tail
from .net import NET_TASK
from .nodes import placement_error

if TYPE_CHECKING:
    from ..base import WorkloadSpec
    from .api import NomadApi

__all__ = [
    "WAIT_S",
    "Run",
    "await_evaluation",
    "await_placement",
    "await_stopped",
    "describe_allocs",
    "job_allocs",
    "register_job",
    "watch_allocs",
]

P = ParamSpec("P")
T = TypeVar("T")


class Run(Protocol):
    """Runs one synchronous API call in a worker thread, translating Nomad's errors (``what`` names it)."""

    async def __call__(self, what: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...


_PLACEMENT_WAIT_S = 90.0
_TERMINAL = ("complete", "failed", "lost")
WAIT_S = 2.0


def _filter(jid: str) -> dict[str, str]:
    return {"filter": f"JobID == {json.dumps(jid)}"}


def job_allocs(api: NomadApi, jid: str) -> list[dict[str, Any]]:
    """Every allocation of job ``jid``, of all its versions, with their resources."""
    allocs: list[dict[str, Any]] = api.get("allocations", params={"resources": "true", **_filter(jid)})
    return allocs


def watch_allocs(api: NomadApi, jid: str, index: int, wait_s: float) -> tuple[list[dict[str, Any]], int]:
    """``job_allocs`` once any allocation changed past ``index`` (or after ``wait_s``), and the next index."""
    params = {"resources": "true", **_filter(jid)}
    allocs: list[dict[str, Any]]
    allocs, index = api.get_blocking("allocations", index=index, wait_s=wait_s, params=params)
    return allocs, index


async def _allocs_after(run: Run, api: NomadApi, jid: str, index: int) -> tuple[list[dict[str, Any]], int]:
    """The allocations of ``jid`` once any allocation changed past ``index`` (or after ``WAIT_S``)."""
    return await run(f"list allocations of {jid}", watch_allocs, api, jid, index, WAIT_S)


def register_job(api: NomadApi, job: dict[str, Any], enforce: bool = False) -> tuple[str, int]:
    """Submit ``job``; returns the evaluation id and the job version Nomad stored.

    With ``enforce``, ``job`` is a copy read from Nomad and is registered only if the job has not changed
    since (its ``JobModifyIndex``): a job purged, stopped or updated meanwhile is not brought back as it was.
    Raises: Conflict when it changed."""
    body: dict[str, Any] = {"Job": job}
    if enforce:
        body |= {"EnforceIndex": True, "JobModifyIndex": int(job["JobModifyIndex"])}
    result = api.post("jobs", body=body)
    version = int(api.get("job", job["ID"])["Version"])
    return str(result.get("EvalID") or ""), version


async def await_evaluation(
    run: Run, api: NomadApi, jid: str, eval_id: str, spec: WorkloadSpec | None, deadline: float
) -> dict[str, Any]:
    """The evaluation ``eval_id`` once the scheduler is done with it ({} when there is none, or time ran out).

    Raises: what ``_raise_placement_error`` makes of allocations it could not place; AgentHostError when it
    failed."""
    evaluation: dict[str, Any] = {}
    index = 0
    while eval_id and time.monotonic() < deadline:
        evaluation, index = await run(
            f"read evaluation of {jid}", api.get_blocking, "evaluation", eval_id, index=index, wait_s=WAIT_S
        )
        if evaluation.get("FailedTGAllocs"):
            await _raise_placement_error(run, api, jid, evaluation["FailedTGAllocs"], spec)
        if evaluation.get("Status") in ("complete", "failed", "canceled"):
            if evaluation.get("Status") != "complete":
                raise AgentHostError(f"Nomad could not schedule {jid}: {evaluation.get('StatusDescription')}")
            break
    return evaluation


async def await_placement(
    run: Run,
    api: NomadApi,
    jid: str,
    eval_id: str,
    version: int,
    spec: WorkloadSpec | None,
    newer_than: int = 0,
) -> None:
    """Wait until the evaluation placed the job and its task started or failed to; only allocations created
    after index ``newer_than`` count (those replacing a failed one).

    Raises: RuntimeUnavailable / AgentHostError when no node can take it, ImageNotFound when the
    node cannot get the image, WorkloadFailed-like AgentHostError for other start failures.
    """
    deadline = time.monotonic() + _PLACEMENT_WAIT_S
    evaluation = await await_evaluation(run, api, jid, eval_id, spec, deadline)
    alloc: dict[str, Any] | None = None
    index = 0
    while time.monotonic() < deadline:
        allocs, index = await _allocs_after(run, api, jid, index)
        current = [
            a for a in allocs if int(a.get("JobVersion", -1)) == version and int(a.get("CreateIndex", 0)) > newer_than
        ]
        alloc = latest_alloc(current)
        if alloc is not None:
            failure = task_failure(alloc)
            if failure:
                if "pull" in failure.lower() or "no such image" in failure.lower():
                    raise ImageNotFound(
                        f"image {spec.image if spec else ''!r}: the Nomad node could not get it ({failure})",
                        "push the image to a registry the nodes can reach (build_from_git does), or load it "
                        "onto the nodes",
                    )
                if failure.startswith("preparing the tenant network"):
                    lines = await run(f"read logs of {jid}", read_tail, api, alloc["ID"], "stderr", 5, NET_TASK)
                    failure += "".join(f"\n{line.text}" for line in lines)
                    raise AgentHostError(
                        f"Nomad could not start {jid}: {failure}",
                        "the node's Docker must let the platform create bridges (see nomad/README.md)",
                    )
                raise AgentHostError(f"Nomad could not start {jid}: {failure}", "check the image and command")
            # The main task, not the allocation: that runs already while a prestart task does.
            task = (alloc.get("TaskStates") or {}).get(TASK) or {}
            if task.get("State") in ("running", "dead") or alloc.get("ClientStatus") in _TERMINAL:
                return
    if alloc is None:
        raise BackendUnavailable(
            f"Nomad placed no allocation for {jid} within {_PLACEMENT_WAIT_S:.0f} s "
            f"(evaluation {eval_id or '-'}: {evaluation.get('Status', 'unknown')} "
            f"{evaluation.get('StatusDescription', '')})",
            "platform_status shows the cluster; retry once its scheduler catches up",
        )


async def _raise_placement_error(
    run: Run, api: NomadApi, jid: str, failed: dict[str, Any], spec: WorkloadSpec | None
) -> None:
    """Raises: NoCapacity when nodes passed the job's constraints but had no room (with what each has free),
    else what ``placement_error`` makes of the scheduler's verdict."""
    metrics: dict[str, Any] = next(iter(failed.values()), {}) or {}
    if not metrics.get("NodesExhausted"):
        raise placement_error(failed, spec.runtime if spec else None)
    job = await run(f"read job {jid}", api.get, "job", jid)
    nodes = await run("read the nodes' free capacity", rooms, api, str(job.get("NodePool") or ""))
    what = f"{spec.kind} {spec.id}" if spec else jid
    if spec is not None:
        what += f" (limits {spec.cpus:g} cpus, {spec.memory_mb} MB)"
    raise no_capacity(what, job_reservation(job), nodes, sorted(metrics.get("DimensionExhausted") or {}))


async def await_stopped(run: Run, api: NomadApi, jid: str, timeout_s: float) -> list[dict[str, Any]]:
    """Wait, at most ``timeout_s``, until every allocation of ``jid`` is terminal; returns those that were
    not when time ran out (none: all stopped).

    The client reports an allocation terminal once its task runner destroyed the task, and the docker
    driver removes the container then: terminal means the container is gone."""
    deadline = time.monotonic() + timeout_s
    index = 0
    while True:
        allocs, index = await _allocs_after(run, api, jid, index)
        running = [a for a in allocs if a.get("ClientStatus") not in _TERMINAL]
        if not running or time.monotonic() >= deadline:
            return running


def describe_allocs(allocs: list[dict[str, Any]]) -> str:
    """Which allocations, where, and what the client and the scheduler say of each: for an error message."""

    def one(a: dict[str, Any]) -> str:
        node = a.get("NodeName") or str(a.get("NodeID", ""))[:8]
        why = f", {a['DesiredDescription']}" if a.get("DesiredDescription") else ""
        return (
            f"allocation {str(a.get('ID', ''))[:8]} (job version {a.get('JobVersion')}) on node {node}: "
            f"client {a.get('ClientStatus')}, desired {a.get('DesiredStatus')}{why}"
        )

    return "; ".join(one(a) for a in allocs)
