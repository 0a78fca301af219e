"""Each tenant's networked workloads on one Nomad node, which moves as a whole.

A tenant's services and databases reach each other by name on the tenant's Docker bridge, and that
bridge exists per node (``net``): so every job of a tenant that joins its network is pinned to the
tenant's node, recorded in the Variable ``agenthost/<instance>/tenants/<tenant>``. The node is chosen
before the tenant's first placement (a ready, eligible, undrained node, the one with the most free
memory) and written with check-and-set, so concurrent first placements agree on it.

When that node is down, draining or ineligible, the tenant moves: a new node is recorded and every
running job of the tenant on the network is registered again with the new constraint, so Nomad
replaces its allocation there. A job whose volumes live on the old node cannot follow (its data is
there): it stays pinned to its volume's node and is reported as stranded, until the node comes back or
its volume is released (``release_volume``) for a restore elsewhere. Synchronous: callers run these in
worker threads (``NomadBackend._run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, NoCapacity, NotFound
from ...labels import L_INSTANCE, L_TENANT
from .allocs import register_job
from .capacity import room
from .jobs import latest_alloc
from .net import NET_TASK
from .vars import Items, read_items, update_items
from .volumes import NODE, PATH, job_volume_names, volume_items, volume_meta_path

if TYPE_CHECKING:
    from ..base import WorkloadStatus
    from .api import NomadApi

__all__ = [
    "NODE_ATTR",
    "STRANDED",
    "Moved",
    "joins_tenant_network",
    "lost_status",
    "lost_volume_node",
    "move_tenant",
    "node_state",
    "pin_to",
    "read_job",
    "reclaim_volume",
    "release_volume",
    "tenant_node",
    "tenant_pin_path",
    "tenants_on",
]

NODE_ATTR = "${node.unique.id}"
STRANDED = "stranded"  # in a tenant's record: the node that holds the data of workloads that could not follow


def tenant_pin_path(instance: str, tenant: str) -> str:
    """The Variable that records the node of platform ``instance``'s tenant ``tenant``."""
    return f"agenthost/{instance}/tenants/{tenant}"


def node_state(api: NomadApi, node_id: str) -> str:
    """'ready', or why the node takes no work: 'down', 'draining', 'ineligible', 'gone' (deregistered)."""
    try:
        node = api.get("node", node_id)
    except NotFound:
        return "gone"
    if node.get("Status") != "ready":
        return "down"
    if node.get("Drain") or node.get("DrainStrategy"):
        return "draining"
    if node.get("SchedulingEligibility") != "eligible":
        return "ineligible"
    return "ready"


def _choose(api: NomadApi, node_pool: str, avoid: str = "") -> str:
    """A ready, eligible, undrained node other than ``avoid``, the one with the most free memory.

    Raises: NoCapacity when there is none."""
    candidates = []
    for stub in api.get("nodes"):
        if stub["ID"] == avoid or stub.get("Drain") or stub.get("Status") != "ready":
            continue
        if stub.get("SchedulingEligibility") != "eligible":
            continue
        if node_pool not in ("", "all") and stub.get("NodePool", "default") != node_pool:
            continue
        free = room(api.get("node", stub["ID"]), api.get("node", stub["ID"], "allocations"))
        candidates.append((free.free_memory_mb, free.free_cpu_mhz, str(stub["ID"])))
    if not candidates:
        raise NoCapacity(
            "no ready, eligible Nomad node can take this tenant's workloads"
            + (f" (its node {avoid[:8]} is not usable)" if avoid else ""),
            "list_nodes shows the nodes; make one eligible or add a client node",
        )
    return max(candidates)[2]


def tenant_node(
    api: NomadApi, instance: str, node_pool: str, tenant: str, prefer: str = "", to: str = ""
) -> tuple[str, str]:
    """The tenant's node and the node it had before ('' unless it moved now).

    The recorded node while it is ready (unless ``to``, a ready node, is asked for); else ``prefer`` (where the
    workload's volumes are) when that is ready, else a chosen one, recorded with check-and-set.
    Raises: NoCapacity when no node is usable.
    """
    path = tenant_pin_path(instance, tenant)
    items, _ = read_items(api, path)
    old = (items or {}).get(NODE, "")
    if old and (not to or to == old) and node_state(api, old) == "ready":
        return old, ""
    prefer = to or prefer
    new = prefer if prefer and prefer != old and node_state(api, prefer) == "ready" else _choose(api, node_pool, old)

    def change(current: Items | None) -> Items | None:
        if (current or {}).get(NODE, "") != old:
            return None  # another writer moved it meanwhile: theirs stands
        return {k: v for k, v in (current or {}).items() if k != STRANDED} | {NODE: new, L_TENANT: tenant}

    recorded = (update_items(api, path, change) or {}).get(NODE, new)
    return recorded, old if recorded != old else ""


def joins_tenant_network(job: dict[str, Any]) -> bool:
    """Whether a registered job joins its tenant's bridge (its group has the ``net`` prestart task)."""
    return any(t.get("Name") == NET_TASK for g in job.get("TaskGroups") or [] for t in g.get("Tasks") or [])


def pin_to(job: dict[str, Any], node_id: str) -> None:
    """Constrain a registered job to ``node_id``, in place of the node it was pinned to."""
    kept = [c for c in job.get("Constraints") or [] if c.get("LTarget") != NODE_ATTR]
    job["Constraints"] = [*kept, {"LTarget": NODE_ATTR, "RTarget": node_id, "Operand": "="}]


def pinned_to(job: dict[str, Any]) -> str | None:
    """The node a registered job is constrained to, if any."""
    return next((str(c["RTarget"]) for c in job.get("Constraints") or [] if c.get("LTarget") == NODE_ATTR), None)


def _volume_nodes(api: NomadApi, instance: str, job: dict[str, Any]) -> set[str]:
    return {(volume_items(api, instance, name) or {}).get(NODE) or "" for name in job_volume_names(job)} - {""}


@dataclass
class Moved:
    """What moving a tenant did: its new node, the jobs registered there, and those whose data stays behind."""

    node: str
    moved: list[dict[str, str]] = field(default_factory=list)  # job meta of each job sent to the new node
    stranded: list[dict[str, str]] = field(default_factory=list)  # job meta of each job held by its volumes


def _tenant_jobs(api: NomadApi, instance: str, tenant: str) -> list[dict[str, Any]]:
    return [
        api.get("job", stub["ID"])
        for stub in api.get("jobs", params={"meta": "true"})
        if (stub.get("Meta") or {}).get(L_INSTANCE) == instance and (stub.get("Meta") or {}).get(L_TENANT) == tenant
    ]


_MOVE_ATTEMPTS = 5


def _move_job(api: NomadApi, instance: str, job: dict[str, Any] | None, node: str, out: Moved) -> None:
    """Register a running networked ``job`` again pinned to ``node``, or report it stranded by its volumes.

    Registered with check-and-set on the copy read: a job deleted or stopped since stays so (brought back, it
    would be an orphan whose env Variable is gone), one updated since is looked at again as it now is.
    Raises: Conflict when it kept changing."""
    for _ in range(_MOVE_ATTEMPTS):
        if job is None or job.get("Stop") or not joins_tenant_network(job):
            return
        meta = {k: str(v) for k, v in (job.get("Meta") or {}).items()}
        held = _volume_nodes(api, instance, job)
        if held and held != {node}:
            out.stranded.append({**meta, NODE: held.pop()})
            return
        pin_to(job, node)
        try:
            register_job(api, job, enforce=True)
        except Conflict:
            job = read_job(api, str(job["ID"]))
            continue
        out.moved.append(meta)
        return
    raise Conflict(f"job {job and job['ID']} changed {_MOVE_ATTEMPTS} times while its tenant moved", "retry")


def read_job(api: NomadApi, jid: str) -> dict[str, Any] | None:
    """Job ``jid`` as Nomad holds it, or None when there is none."""
    try:
        job: dict[str, Any] = api.get("job", jid)
    except NotFound:
        return None
    return job


def move_tenant(
    api: NomadApi, instance: str, node_pool: str, tenant: str, skip: str = "", prefer: str = "", to: str = ""
) -> Moved:
    """The tenant's node, chosen or recorded now when it has none (``tenant_node``); when its node is not ready
    (or ``to`` is asked for), a new one, where its running networked jobs (but job ``skip``, which its caller
    registers) are registered again. Jobs held by their data elsewhere are left, and their node is recorded
    (``STRANDED``) so that the tenant moves back to its data when that node is ready again.
    Raises: NoCapacity when no node is usable."""
    node, old = tenant_node(api, instance, node_pool, tenant, prefer, to)
    out = Moved(node)
    if not old:
        return out
    for job in _tenant_jobs(api, instance, tenant):
        if job["ID"] != skip:
            _move_job(api, instance, job, node, out)
    if out.stranded:
        held_on = out.stranded[0][NODE]
        update_items(api, tenant_pin_path(instance, tenant), lambda items: {**(items or {}), STRANDED: held_on})
    return out


def tenants_on(api: NomadApi, instance: str, node_id: str | None = None) -> list[tuple[str, Items]]:
    """(tenant, its record) of platform ``instance``'s tenants, those on ``node_id`` only when given."""
    prefix = tenant_pin_path(instance, "")
    out = []
    for stub in api.get("vars", params={"prefix": prefix}):
        items, _ = read_items(api, stub["Path"])
        node = (items or {}).get(NODE, "")
        if items and node and (node_id is None or node == node_id):
            out.append((stub["Path"][len(prefix) :], items))
    return out


def lost_volume_node(api: NomadApi, instance: str, job: dict[str, Any]) -> tuple[str, str] | None:
    """(node, its state) of the node that holds a job's volumes when that node cannot run it, else None."""
    for node in _volume_nodes(api, instance, job):
        state = node_state(api, node)
        if state != "ready":
            return node, state
    return None


def lost_status(
    api: NomadApi, instance: str, job: dict[str, Any], allocs: list[dict[str, Any]], st: WorkloadStatus
) -> WorkloadStatus:
    """``st`` of a job that is not running, told apart: held by data on a node that cannot run it (stranded:
    ``node_lost``), or lost with its node and about to be placed again. Either is pending, not exited: nothing
    crashed, and a caller that redeploys exited workloads would only pin it to the lost node again. A stopped
    job keeps its state, and says where its data is all the same."""
    if st.state == "running":
        return st
    if lost := lost_volume_node(api, instance, job):
        node, state = lost
        error = (
            f"its data is on node {node}, which is {state}: it cannot run elsewhere by itself; bring the node"
            " back, or restore its latest backup (restore_backup) to run it on another node"
        )
        if job.get("Stop"):
            return st.model_copy(update={"node_lost": node, "error": error})
        return st.model_copy(
            update={"state": "pending" if st.state != "missing" else "missing", "node_lost": node, "error": error}
        )
    if job.get("Stop"):
        return st
    if (latest_alloc(allocs) or {}).get("ClientStatus") == "lost":
        return st.model_copy(update={"state": "pending", "exit_code": None, "error": "its node was lost; moving"})
    return st


def release_volume(api: NomadApi, instance: str, name: str) -> str | None:
    """Forget the node of volume ``name`` when that node is not ready, so that the next workload that mounts
    it makes it afresh (empty) where it lands: the step before restoring a backup on another node.

    Returns the node it was on when released, None when there was nothing to release (no record, no node,
    or a node that is ready: its data is still there, and releasing would lose it).
    """
    path = volume_meta_path(instance, name)
    released: list[str] = []

    def change(items: Items | None) -> Items | None:
        node = (items or {}).get(NODE, "")
        if items is None or not node or node_state(api, node) == "ready":
            return None
        released.append(node)
        return {k: v for k, v in items.items() if k not in (NODE, PATH)}

    items = update_items(api, path, change)
    if not released:
        return None
    tenant = (items or {}).get(L_TENANT, "")
    if tenant:  # its tenant no longer goes back to that node for it

        def forget(pin: Items | None) -> Items | None:
            return (
                {k: v for k, v in pin.items() if k != STRANDED} if pin and pin.get(STRANDED) == released[-1] else None
            )

        update_items(api, tenant_pin_path(instance, tenant), forget)
    return released[-1]


def reclaim_volume(api: NomadApi, instance: str, name: str, node_id: str) -> str | None:
    """Undo a release: volume ``name`` lives on ``node_id`` again, and its tenant goes back to that node once it
    is ready (``STRANDED``). Returns the node where it was placed meanwhile (its copy there holds nothing the
    volume needs), or None."""
    since: list[str] = []

    def change(items: Items | None) -> Items | None:
        if items is None:
            return None
        since.append(items.get(NODE, ""))
        return {**{k: v for k, v in items.items() if k != PATH}, NODE: node_id}

    items = update_items(api, volume_meta_path(instance, name), change)
    tenant = (items or {}).get(L_TENANT, "")
    if tenant:
        update_items(api, tenant_pin_path(instance, tenant), lambda pin: {**pin, STRANDED: node_id} if pin else None)
    return since[-1] if since and since[-1] not in ("", node_id) else None
