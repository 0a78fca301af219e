"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import (
    backups,
    builds,
    databases,
    domains,
    events,
    exec,
    keys,
    nodes,
    platform,
    sandboxes,
    services,
    ssh,
    volumes,
)

__all__ = [
    "backups",
    "builds",
    "databases",
    "domains",
    "events",
    "exec",
    "keys",
    "nodes",
    "platform",
    "sandboxes",
    "services",
    "ssh",
    "volumes",
]
