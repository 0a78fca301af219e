"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import builds, exec, keys, nodes, platform, sandboxes, services, ssh

__all__ = ["builds", "exec", "keys", "nodes", "platform", "sandboxes", "services", "ssh"]
