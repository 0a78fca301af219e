"""Volumes on Nomad: dynamic host volumes, each with a metadata Variable that marks it as this platform's.

The volume is made on one node by the ``agenthost-dir`` plugin, so a database's job follows its
data there. The Variable ``agenthost/<instance>/volumes/<name>`` holds the volume's labels, its
owner (``agenthost.managed``/``agenthost.instance``) and its node; listing reads those, since
host volumes carry no labels of their own. These calls are synchronous: callers run them in
worker threads (``NomadBackend._run``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import AgentHostError, Conflict, NotFound
from .nomad_vars import get_variable, put_variable

if TYPE_CHECKING:
    from .nomad_api import NomadApi

__all__ = [
    "VOLUME_PLUGIN",
    "ensure_volume",
    "host_volume",
    "list_volumes",
    "remove_volume",
    "volume_host_path",
    "volume_meta_path",
]

# nomad/plugins/agenthost-dir: a directory the workload's own user can write (Nomad's mkdir makes it root's).
VOLUME_PLUGIN = "agenthost-dir"
_READY_WAIT_S = 60.0


def _meta_prefix(instance: str) -> str:
    return f"agenthost/{instance}/volumes/"


def volume_meta_path(instance: str, name: str) -> str:
    """The Variable that records volume ``name`` as platform ``instance``'s."""
    return f"{_meta_prefix(instance)}{name}"


def host_volume(api: NomadApi, name: str) -> dict[str, Any] | None:
    """The host volume called ``name`` in the API's namespace, or None."""
    for stub in api.get("volumes", params={"type": "host"}):
        if stub.get("Name") == name:
            volume: dict[str, Any] = api.get("volume", "host", stub["ID"])
            return volume
    return None


def ensure_volume(
    api: NomadApi, instance: str, node_pool: str, own: dict[str, str], name: str, labels: dict[str, str]
) -> None:
    """Create host volume ``name`` in ``node_pool`` unless it exists, and (re)write its metadata Variable.

    ``own`` are the labels that mark this platform's objects.

    Raises: Conflict when a host volume of that name exists without this platform's Variable,
    AgentHostError when a new volume does not become ready in time.
    """
    meta = get_variable(api, volume_meta_path(instance, name))
    volume = host_volume(api, name)
    if volume is not None and meta is None:
        raise Conflict(f"host volume {name} exists but is not this platform's", "pick another name")
    if volume is None:
        created = api.put(
            "volume",
            "host",
            "create",
            body={
                "Volume": {
                    "Name": name,
                    "Namespace": api.namespace,
                    "PluginID": VOLUME_PLUGIN,
                    "NodePool": node_pool,
                    "RequestedCapabilities": [{"AttachmentMode": "file-system", "AccessMode": "single-node-writer"}],
                }
            },
        )
        volume = created["Volume"]
        deadline = time.monotonic() + _READY_WAIT_S
        while volume.get("State") != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
            volume = api.get("volume", "host", volume["ID"])
        if volume.get("State") != "ready":
            raise AgentHostError(f"host volume {name} did not become ready ({volume.get('State')})")
    items = {**labels, **own, "node": str(volume.get("NodeID", ""))}
    put_variable(api, volume_meta_path(instance, name), items)


def remove_volume(api: NomadApi, instance: str, name: str) -> bool:
    """Delete volume ``name`` and its Variable; False when it is not this platform's (or gone)."""
    if get_variable(api, volume_meta_path(instance, name)) is None:
        return False
    volume = host_volume(api, name)
    if volume is not None:
        api.delete("volume", "host", volume["ID"])
    api.delete("var", volume_meta_path(instance, name))
    return volume is not None


def volume_host_path(api: NomadApi, name: str) -> str:
    """The directory on the node that holds volume ``name``.

    Raises: NotFound when there is no such host volume.
    """
    volume = host_volume(api, name)
    if volume is None:
        raise NotFound(f"volume {name} does not exist")
    return str(volume.get("HostPath", ""))


def list_volumes(api: NomadApi, instance: str, labels: dict[str, str]) -> list[str]:
    """Names of platform ``instance``'s volumes whose metadata has ``labels``."""
    prefix = _meta_prefix(instance)
    names = []
    for stub in api.get("vars", params={"prefix": prefix}):
        items = (get_variable(api, stub["Path"]) or {}).get("Items") or {}
        if all(items.get(k) == v for k, v in labels.items()):
            names.append(stub["Path"][len(prefix) :])
    return names
