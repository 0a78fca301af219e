"""Volumes on Nomad: Docker named volumes on the node that holds them, each recorded in a metadata Variable.

Nomad 1.6 cannot create host volumes, so a volume is a Docker named volume that the node's own
dockerd makes when the first job that mounts it starts (the docker driver's ``mount { type =
"volume" }``), exactly like the Docker backend's volumes: a fresh one takes the owner of the
image's directory at its mount path (postgres, redis and app own theirs), and it outlives every
container. The Variable ``agenthost/<instance>/volumes/<name>`` marks it as this platform's
(its labels, owner) and, from its first placement on, names its node: every job that mounts it
is then pinned there, while the first one goes where the scheduler finds room for it. Writes to
the Variable are check-and-set, so two writers never record two nodes. Work on the node itself
(its path, removal) runs as a short batch job there (``nomad_volume_jobs``). Synchronous:
callers run these in worker threads (``NomadBackend._run``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ...errors import Conflict, InvalidInput
from ...labels import L_TENANT
from .allocs import job_allocs
from .jobs import check_volume_name, latest_alloc
from .vars import Items, read_items, update_items

if TYPE_CHECKING:
    from ..base import WorkloadSpec
    from .api import NomadApi

__all__ = [
    "NODE",
    "PATH",
    "claim_node",
    "docker_labels",
    "ensure_volume",
    "job_volume_names",
    "list_volumes",
    "pin_after_placement",
    "pin_job",
    "volume_items",
    "volume_meta_path",
    "volume_placement",
]

NODE = "node"  # Variable items beside the labels: the node that holds the volume, and its path there
PATH = "path"
_NODE_ATTR = "${node.unique.id}"
_MARK = "agenthost.nomad-volume"
# Labels become task config too, where Nomad would expand ${...}.
_LABEL = re.compile(r"[A-Za-z0-9_.:/-]{0,256}")


def _meta_prefix(instance: str) -> str:
    return f"agenthost/{instance}/volumes/"


def volume_meta_path(instance: str, name: str) -> str:
    """The Variable that records volume ``name`` as platform ``instance``'s."""
    return f"{_meta_prefix(instance)}{name}"


def volume_items(api: NomadApi, instance: str, name: str) -> Items | None:
    """The volume's record (labels, owner, node, path), or None when it is not this platform's."""
    return read_items(api, volume_meta_path(instance, name))[0]


def docker_labels(items: Items) -> Items:
    """The labels of the Docker volume on the node: the record without its node and path."""
    return {k: v for k, v in items.items() if k not in (NODE, PATH)}


def _labels(name: str, own: Items, labels: Items) -> Items:
    """The record's labels: ``labels``, this platform's ``own``, and a mark that a Nomad job made the
    Docker volume (the dev agent's ``infra/nomad.sh stop`` removes those). Raises: InvalidInput."""
    check_volume_name(name)
    merged = {**labels, **own, _MARK: "true"}
    for key, value in merged.items():
        if not (_LABEL.fullmatch(key) and _LABEL.fullmatch(value)):
            raise InvalidInput(f"invalid volume label {key}={value!r}", "letters, digits and '_.:/-' only")
    return merged


def ensure_volume(api: NomadApi, instance: str, own: Items, name: str, labels: Items) -> Items:
    """Record volume ``name`` with ``labels`` and this platform's ``own`` labels, keeping its node if it has one.

    Nothing happens on a node: Docker makes the volume where its first job runs. Returns the record.

    Raises: InvalidInput for a name Docker refuses or a label that is not plain text.
    """
    merged = _labels(name, own, labels)
    items = update_items(
        api, volume_meta_path(instance, name), lambda items: {**(items or {}), **merged}, "volume record"
    )
    assert items is not None  # written above, or already equal
    return items


def volume_placement(api: NomadApi, instance: str, own: Items, spec: WorkloadSpec) -> tuple[str, dict[str, Items]]:
    """The node that holds ``spec``'s volumes ('' while none has been placed), and each one's Docker labels.

    Reads only: a volume the spec mounts without a record gets one when its first job has been
    placed (``pin_after_placement``), as Docker makes a volume on first use.

    Raises: Conflict when the volumes are on different nodes.
    """
    nodes: dict[str, str] = {}
    labels: dict[str, Items] = {}
    for volume in spec.volumes:
        items = volume_items(api, instance, volume.name) or _labels(volume.name, own, {L_TENANT: spec.tenant_id})
        labels[volume.name] = docker_labels(items)
        if items.get(NODE):
            nodes[volume.name] = items[NODE]
    if len(set(nodes.values())) > 1:
        where = ", ".join(f"{name} on {node}" for name, node in sorted(nodes.items()))
        raise Conflict(
            f"a workload cannot mount volumes that live on different nodes ({where})",
            "mount only volumes that are used together",
        )
    return next(iter(nodes.values()), ""), labels


def claim_node(
    api: NomadApi, instance: str, name: str, node_id: str, path: str | None = None, labels: Items | None = None
) -> str:
    """Record that volume ``name`` is on ``node_id`` (and at ``path`` there) unless another node holds it.

    A volume without a record gets one with ``labels`` (none without them). Returns the node the
    record names afterwards: ``node_id``, or the one that was there first.
    """

    def change(items: Items | None) -> Items | None:
        if items is None and labels is not None:
            items = dict(labels)
        if items is None or items.get(NODE, node_id) != node_id:
            return None
        return {**items, NODE: node_id, **({PATH: path} if path else {})}

    items = update_items(api, volume_meta_path(instance, name), change, "volume record")
    return (items or {}).get(NODE, node_id)


def pin_after_placement(
    api: NomadApi, instance: str, names: list[str], jid: str, version: int, labels: dict[str, Items] | None = None
) -> None:
    """Record the node where version ``version`` of job ``jid`` runs as the node of its volumes ``names``
    (a no-op for those already recorded there); one without a record gets one with its ``labels``.

    Raises: Conflict when another workload placed one of them on another node at the same time;
    this job is stopped then, so that the next deploy runs it on the volume's node.
    """
    if not names:
        return
    alloc = latest_alloc([a for a in job_allocs(api, jid) if int(a.get("JobVersion", -1)) == version])
    if alloc is None:
        return
    node = str(alloc["NodeID"])
    for name in names:
        held = claim_node(api, instance, name, node, labels=(labels or {}).get(name))
        if held != node:
            api.delete("job", jid)
            raise Conflict(
                f"volume {name} was placed on node {held} by another workload while this one started on {node}",
                "deploy again: it will run on the volume's node",
            )


def job_volume_names(job: dict[str, Any]) -> list[str]:
    """The Docker volumes a registered job mounts."""
    return [
        str(mount["source"])
        for group in job.get("TaskGroups") or []
        for task in group.get("Tasks") or []
        for mount in (task.get("Config") or {}).get("mount") or []
        if mount.get("type") == "volume"
    ]


def pin_job(api: NomadApi, instance: str, job: dict[str, Any]) -> None:
    """Constrain a registered job to the node of the volumes it mounts, unless it is pinned already.

    A job first placed before its volumes had a node carries no pin: resubmitted, it must not move.
    """
    constraints = job.get("Constraints") or []
    nodes = {(volume_items(api, instance, name) or {}).get(NODE) for name in job_volume_names(job)} - {None}
    if len(nodes) == 1 and not any(c.get("LTarget") == _NODE_ATTR for c in constraints):
        job["Constraints"] = [*constraints, {"LTarget": _NODE_ATTR, "RTarget": nodes.pop(), "Operand": "="}]


def list_volumes(api: NomadApi, instance: str, labels: Items) -> list[str]:
    """Names of platform ``instance``'s volumes whose record has ``labels``."""
    prefix = _meta_prefix(instance)
    names = []
    for stub in api.get("vars", params={"prefix": prefix}):
        items = read_items(api, stub["Path"])[0] or {}
        if all(items.get(k) == v for k, v in labels.items()):
            names.append(stub["Path"][len(prefix) :])
    return names
