"""From a ``WorkloadSpec`` to a Nomad job, and from Nomad's allocations back to a ``WorkloadStatus``.

The job comes from ``nomad/workload.nomad.hcl`` parsed by Nomad itself with typed variable
values (a JSON variables file: strings there are literal, never templates). No value from an
agent is ever written into HCL text. Two more rules keep agent strings inert:

- env values never enter the job: they go to the job's Nomad Variable (``nomad/jobs/<job id>``)
  and reach the task through the template in the HCL file;
- Nomad substitutes ``${name}`` in task config at run time (node attributes, task env), so such
  references in an image, command or path are refused instead of being silently expanded.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import InvalidInput
from ...labels import L_ID, PREFIX, container_name
from ..base import Endpoint, WorkloadHealth, WorkloadSpec, WorkloadState, WorkloadStatus
from .capacity import Reservation
from .net import NET_TASK, TenantNetworks, network_variables

if TYPE_CHECKING:
    from .api import NomadApi

__all__ = [
    "HASH_ITEM",
    "TASK",
    "alloc_endpoints",
    "exit_info",
    "check_reference",
    "check_volume_name",
    "job_id",
    "job_template",
    "job_variables",
    "latest_alloc",
    "list_statuses",
    "serving_alloc",
    "parse_job",
    "status_from",
    "task_failure",
    "variable_items",
    "variable_path",
]

TASK = "main"
HASH_ITEM = "AGENTHOST_SPEC_HASH"  # the spec hash covers env values, so it lives beside them, not in the job
_BATCH_KINDS = {"sandbox", "build", "job"}
# What Nomad's client would substitute at run time (helper/args.ReplaceEnv).
_NOMAD_INTERPOLATION = re.compile(r"\$\{[a-zA-Z0-9_\-.]+\}")
_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")  # Docker's rule, shorter
# go-envparse (Nomad's env file reader) scans lines of at most 64 KiB.
_MAX_ENV_LINE = 60 * 1024
# How long a new version of a running job must stay healthy before its deployment promotes it.
_MIN_HEALTHY_S = 3


def job_id(workload_id: str) -> str:
    return container_name(workload_id)


def variable_path(workload_id: str) -> str:
    """The Variable a job's tasks may read through their workload identity."""
    return f"nomad/jobs/{job_id(workload_id)}"


NOMAD_DIR = Path(__file__).resolve().parents[3] / "nomad"


def job_template() -> str:
    """The HCL2 job file in the repository's nomad/ dir (agenthost runs from its checkout)."""
    return (NOMAD_DIR / "workload.nomad.hcl").read_text()


def parse_job(api: NomadApi, hcl: str, variables: dict[str, Any], jid: str, meta: dict[str, str]) -> dict[str, Any]:
    """The job Nomad parses from ``hcl`` with typed ``variables``, as job ``jid`` with ``meta``."""
    job: dict[str, Any] = api.post("jobs", "parse", body={"JobHCL": hcl, "Variables": json.dumps(variables)})
    job.update({"ID": jid, "Name": jid, "Namespace": api.namespace, "Meta": meta})
    for group in job["TaskGroups"]:
        for task in group["Tasks"]:
            # Docker takes an empty entrypoint for "none", not for "the image's own".
            if not (task.get("Config") or {}).get("entrypoint", True):
                del task["Config"]["entrypoint"]
    return job


def check_reference(image: str) -> None:
    """Raises: InvalidInput unless ``image`` is a plain image reference."""
    if not _IMAGE.fullmatch(image) or len(image) > 256:
        raise InvalidInput(
            f"{image!r} is not a valid image reference", "use name[:tag] or registry/name[:tag], e.g. 'myapp:1'"
        )


def check_volume_name(name: str) -> None:
    """Raises: InvalidInput unless ``name`` is a Docker volume name."""
    if not _VOLUME_NAME.fullmatch(name):
        raise InvalidInput(f"invalid volume name {name!r}", "letters, digits, '_', '.' and '-', at most 128")


def _no_interpolation(what: str, values: list[str]) -> None:
    for value in values:
        if _NOMAD_INTERPOLATION.search(value):
            raise InvalidInput(
                f"{what} contains {_NOMAD_INTERPOLATION.search(value).group(0)!r}, which Nomad would replace "  # type: ignore[union-attr]
                "with a node attribute or task variable",
                "write $NAME without braces inside a shell command, or pass the value through env",
            )


def _check_env(env: dict[str, str]) -> None:
    for key, value in env.items():
        if len(key) + len(json.dumps(value, ensure_ascii=False)) + 1 > _MAX_ENV_LINE:
            raise InvalidInput(f"env var {key!r} is too large for Nomad's env file (64 KiB per line)")
        if "\x00" in value:
            raise InvalidInput(f"env var {key!r} contains a NUL byte", "env values are text")


def job_variables(
    spec: WorkloadSpec,
    *,
    cpu_mhz_per_core: float,
    reserve: Reservation | None = None,
    datacenters: list[str],
    node_pool: str,
    nets: TenantNetworks,
    volume_node: str = "",
    volume_labels: dict[str, dict[str, str]] | None = None,
    healthy_deadline_s: float = 45.0,
    first: bool = False,
) -> dict[str, Any]:
    """Typed values for the HCL file's variables. Raises: InvalidInput for what Nomad cannot do safely.

    ``reserve``: what the job reserves (``capacity.reservation``); without it, all its cpus and memory.
    ``volume_node``: the node that holds the spec's volumes ('' before their first placement), ``volume_labels`` the
    labels Docker gives each volume it makes; ``healthy_deadline_s`` how long the new version of an update
    may take to become healthy before Nomad reverts the job; ``first``: the job is new (or was stopped), so its
    deployment has no older version to protect, and its allocation counts as healthy as soon as Nomad's check
    passes (or its task runs), which is when a first deploy is ready.
    """
    check_reference(spec.image)
    _no_interpolation("the image", [spec.image])
    _no_interpolation("the command", [*(spec.command or []), *(spec.entrypoint or [])])
    _no_interpolation("a path or user", [spec.workdir or "", spec.user or "", *(v.path for v in spec.volumes)])
    _no_interpolation("the health check path", [spec.health_check.path] if spec.health_check else [])
    _check_env(spec.env)
    for volume in spec.volumes:
        check_volume_name(volume.name)
    check = spec.health_check
    kind_is_service = spec.kind not in _BATCH_KINDS
    labels = volume_labels or {}
    full = max(1, math.ceil(spec.cpus * cpu_mhz_per_core))
    reserve = reserve or Reservation(cpu_mhz=full, memory_mb=spec.memory_mb, cpu_hard_limit=True)
    return {
        "job_type": "service" if kind_is_service else "batch",
        "datacenters": datacenters,
        "node_pool": node_pool,
        "image": spec.image,
        "command": spec.command or [],
        "entrypoint": spec.entrypoint or [],
        "runtime": spec.runtime,
        "ports": spec.ports,
        "memory_mb": reserve.memory_mb,
        "memory_max_mb": reserve.memory_max_mb,
        "cpu_mhz": reserve.cpu_mhz,
        "cpu_hard_limit": reserve.cpu_hard_limit,
        "pids_limit": spec.pids_limit,
        "readonly_rootfs": spec.read_only_rootfs,
        "tmpfs": [{"path": path, "size_bytes": mb * 1024 * 1024} for path, mb in spec.tmpfs.items()],
        "cap_add": spec.cap_add,
        "user": spec.user or "",
        "workdir": spec.workdir or "",
        **network_variables(spec, nets),
        "node_id": volume_node,
        "init": spec.init,
        "volumes": [
            {"source": v.name, "path": v.path, "read_only": v.read_only, "labels": labels.get(v.name, {})}
            for v in spec.volumes
        ],
        "service_name": job_id(spec.id).replace("_", "-").lower() if kind_is_service and spec.ports else "",
        "check_type": check.type if check is not None and kind_is_service else "none",
        "check_path": check.path if check is not None else "/",
        "restart_attempts": spec.max_restarts if spec.restart == "on-failure" else 0,
        # Two instances on one volume (a database's data) must never run at once: those are replaced, not
        # started beside.
        "update_canary": 1 if spec.kind == "service" and not spec.volumes else 0,
        "update_health": "checks" if check is not None and check.type != "none" and spec.ports else "task_states",
        "update_min_healthy_s": 0 if first else _MIN_HEALTHY_S,
        "update_healthy_deadline_s": max(10, math.ceil(healthy_deadline_s)),
    }


# -- status ------------------------------------------------------------------------------------


def _ts(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    frac = "".join(ch for ch in frac if ch.isdigit())
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}").replace(tzinfo=UTC)


def latest_alloc(allocs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(allocs, key=lambda a: a.get("CreateIndex", 0), default=None)


def serving_alloc(allocs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The allocation that stands for the workload: of those Nomad wants running, the one a deployment's
    canary is being tried beside (the previous version serves until the canary is promoted and it stops);
    else the newest (a stopped or failed workload's last one)."""
    wanted = [a for a in allocs if a.get("DesiredStatus", "run") == "run"]
    settled = [a for a in wanted if not (a.get("DeploymentStatus") or {}).get("Canary")]
    return latest_alloc(settled) or latest_alloc(wanted) or latest_alloc(allocs)


def alloc_endpoints(alloc: dict[str, Any]) -> dict[int, Endpoint]:
    shared = (alloc.get("AllocatedResources") or {}).get("Shared") or {}
    out: dict[int, Endpoint] = {}
    for port in shared.get("Ports") or []:
        if port.get("To"):
            out[int(port["To"])] = Endpoint(host=port.get("HostIP") or "127.0.0.1", port=int(port["Value"]))
    return out


def task_failure(alloc: dict[str, Any]) -> str | None:
    """The driver's message when the task could not start at all (e.g. an image pull failed), or
    why the prestart task that prepares the tenant network failed."""
    states = alloc.get("TaskStates") or {}
    for name in (NET_TASK, TASK):
        for event in reversed((states.get(name) or {}).get("Events") or []):
            if event.get("Type") in ("Driver Failure", "Failed Validation", "Setup Failure"):
                message = str(event.get("DisplayMessage") or event.get("DriverError") or event.get("Message") or "")
                return message if name == TASK else f"preparing the tenant network: {message}"
            if name == NET_TASK and event.get("Type") == "Terminated":
                code = str((event.get("Details") or {}).get("exit_code", event.get("ExitCode", 0)))
                if code not in ("", "0"):
                    return f"preparing the tenant network: the {NET_TASK} task exited with code {code}"
    return None


def exit_info(state: dict[str, Any]) -> tuple[int | None, bool]:
    for event in reversed(state.get("Events") or []):
        if event.get("Type") == "Terminated":
            details = event.get("Details") or {}
            code = details.get("exit_code", event.get("ExitCode"))
            return (int(code) if code not in (None, "") else None), details.get("oom_killed") == "true"
    return None, False


def status_from(
    workload_id: str,
    job: dict[str, Any] | None,
    allocs: list[dict[str, Any]],
    spec_hash: str | None,
    asked: tuple[str, int] | None = None,
) -> WorkloadStatus:
    """``asked``: (allocation id, restarts of it a caller asked for): no crashes, so not counted."""
    if job is None:
        return WorkloadStatus(id=workload_id, state="missing")
    meta = {k: v for k, v in (job.get("Meta") or {}).items() if not k.startswith(f"{PREFIX}.nomad-")}
    alloc = serving_alloc(allocs)
    if alloc is None:
        state: WorkloadState = "exited" if job.get("Stop") else "pending"
        return WorkloadStatus(id=workload_id, state=state, spec_hash=spec_hash, labels=meta)
    task = (alloc.get("TaskStates") or {}).get(TASK) or {}
    client = alloc.get("ClientStatus", "pending")
    restarts = int(task.get("Restarts") or 0)
    crashes = max(0, restarts - asked[1]) if asked and asked[0] == alloc.get("ID") else restarts
    if client in ("complete", "failed", "lost"):
        state = "exited"
    elif task.get("State") == "running" and client == "running":
        state = "running"
    elif restarts and task.get("State") == "pending":
        state = "restarting"
    else:
        state = "pending"
    exit_code, oom = exit_info(task)
    failure = task_failure(alloc) if state != "running" else None
    started_at = _ts(task.get("StartedAt"))
    return WorkloadStatus(
        id=workload_id,
        state=state,
        endpoints=alloc_endpoints(alloc) if state == "running" else {},
        restarts=crashes,
        exit_code=exit_code if state in ("exited", "restarting") or crashes else None,
        error=failure or (alloc.get("ClientDescription") if client == "failed" else None) or None,
        oom_killed=oom,
        started_at=started_at,
        finished_at=_ts(task.get("FinishedAt")),
        spec_hash=spec_hash,
        labels=meta,
        health=_health(alloc, started_at),
    )


def _health(alloc: dict[str, Any], started_at: datetime | None) -> WorkloadHealth | None:
    """Nomad's verdict on the allocation in its deployment. None outside one (a replacement for a lost node's),
    and when the verdict is older than the task's last start (a restart since): the platform probes then."""
    if not alloc.get("DeploymentID"):
        return None
    verdict = alloc.get("DeploymentStatus") or {}
    healthy = verdict.get("Healthy")
    if healthy is None:
        return "pending"
    when = _ts(verdict.get("Timestamp"))
    if when is not None and started_at is not None and when < started_at:
        return None
    return "healthy" if healthy else "unhealthy"


def variable_items(spec: WorkloadSpec, spec_hash: str) -> dict[str, str]:
    """What the job's Nomad Variable holds: the env values, and the spec hash beside them."""
    if any(k.startswith("AGENTHOST_") for k in spec.env):
        raise InvalidInput("env var names starting with AGENTHOST_ are reserved", "rename them")
    return {**spec.env, HASH_ITEM: spec_hash}


def list_statuses(api: NomadApi, wanted: dict[str, str]) -> list[WorkloadStatus]:
    """Statuses of the jobs whose meta has ``wanted``; ``spec_hash`` is left out here."""
    jobs = [
        j
        for j in api.get("jobs", params={"meta": "true"})
        if all((j.get("Meta") or {}).get(k) == v for k, v in wanted.items())
    ]
    if not jobs:
        return []
    by_job: dict[str, list[dict[str, Any]]] = {}
    for alloc in api.get("allocations", params={"resources": "true", "filter": 'JobID matches "^ah-"'}):
        by_job.setdefault(alloc["JobID"], []).append(alloc)
    return [status_from(j["Meta"][L_ID], {**j, "Stop": j.get("Stop")}, by_job.get(j["ID"], []), None) for j in jobs]
