"""Copies of volumes left on nodes that were lost: removed once their node is back.

A volume on a lost node is released for a restore elsewhere (``tenants.release_volume``): its record moves
to the node where the restore lands, and the Docker volume on the lost node stays there, unknown to every
record. Each release is recorded here, in ``agenthost/<instance>/leftovers/<volume>/<node>``, and a reconciler
pass removes the copy once the node is ready again and the volume lives elsewhere (or no longer exists), so a
returning node does not keep a tenant's old data, and a later placement there never finds it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import AgentHostError
from .tenants import node_state
from .vars import delete_variable, put_variable
from .volume_jobs import NodeJobs, remove_copy
from .volumes import NODE, volume_items

if TYPE_CHECKING:
    from .allocs import Run
    from .api import NomadApi

__all__ = ["copies_to_remove", "record_left_copy", "remove_left_copies"]

_VOLUME = "volume"


def _path(instance: str, name: str = "", node: str = "") -> str:
    return f"agenthost/{instance}/leftovers/" + (f"{name}/{node}" if name else "")


def record_left_copy(api: NomadApi, instance: str, name: str, node: str) -> None:
    """Remember that node ``node`` keeps a copy of volume ``name`` that no record points to any more."""
    put_variable(api, _path(instance, name, node), {_VOLUME: name, NODE: node})


def copies_to_remove(api: NomadApi, instance: str) -> list[tuple[str, str]]:
    """(volume, node) of each left copy whose node is ready and whose volume lives elsewhere or is gone.

    A copy whose node left the cluster went with it, and one whose volume was placed on that node again is
    the volume itself: both are forgotten here. A node that is not ready, or a volume released but not
    placed yet, waits for a later pass."""
    out = []
    for stub in api.get("vars", params={"prefix": _path(instance)}):
        name, _, node = stub["Path"][len(_path(instance)) :].rpartition("/")
        state = node_state(api, node)
        items = volume_items(api, instance, name)
        if state == "gone" or (items is not None and items.get(NODE) == node):
            delete_variable(api, stub["Path"])
        elif state == "ready" and (items is None or items.get(NODE)):
            out.append((name, node))
    return out


async def remove_left_copies(run: Run, api: NomadApi, jobs: NodeJobs, instance: str) -> tuple[int, int]:
    """Remove the left copies ``copies_to_remove`` names, each by a job on its node: (removed, failed).

    One that fails (a container of the lost node's old allocation still holds it) is tried again next pass."""
    removed = failed = 0
    for name, node in await run("list left volume copies", copies_to_remove, api, instance):
        try:
            await remove_copy(run, api, jobs, instance, name, node)
        except AgentHostError:
            failed += 1
            continue
        await run(f"forget the copy of {name}", delete_variable, api, _path(instance, name, node))
        removed += 1
    return removed, failed
