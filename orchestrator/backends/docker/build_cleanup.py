"""What a stopped build leaves on the engine, removed: its step containers and the layers it committed."""

from __future__ import annotations

import time
from typing import Any

import docker
import docker.errors

from .build_stream import Parser

__all__ = ["cleanup_sync", "remove_layers_sync"]


def cleanup_sync(client: docker.DockerClient, parser: Parser, cgroup_parent: str | None) -> None:
    """Remove the build's step containers, then the layers it committed (``remove_layers_sync``).

    The engine removes its step containers itself when it ends a build: these are for a stream that
    was cut. Only containers known to be the build's go: those the stream named, and, when it was cut,
    those under the build's own cgroup parent. A container merely running one of the build's layers
    may be another build's step, or a service, that took the layer from the engine's build cache.
    """
    api = client.api
    ours = set(parser.containers)
    if cgroup_parent is not None:  # the stream was cut: its last step may not have been reported
        for summary in api.containers(all=True):
            try:
                if api.inspect_container(summary["Id"])["HostConfig"].get("CgroupParent") == cgroup_parent:
                    ours.add(summary["Id"])
            except docker.errors.NotFound:
                pass
    for cid in ours:
        try:
            api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # the engine is removing it already
                raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_exists(api, cid) for cid in ours):
        time.sleep(0.25)
    remove_layers_sync(client, parser.layers)


def _exists(api: Any, container: str) -> bool:
    try:
        api.inspect_container(container)
    except docker.errors.NotFound:
        return False
    return True


def remove_layers_sync(client: docker.DockerClient, layers: list[str]) -> list[str]:
    """Remove build layers newest first; a tagged one, or one another image builds on, stays.

    Returns the layers that are done with: removed, gone, or tagged. One a container still uses is
    not, and is left for a later call.
    """
    done = []
    for layer in reversed(layers):
        try:
            if not client.api.inspect_image(layer).get("RepoTags"):
                client.api.remove_image(layer, force=False, noprune=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            continue
        done.append(layer)
    return done
