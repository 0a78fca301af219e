"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import builds, keys, nodes, platform, services

__all__ = ["builds", "keys", "nodes", "platform", "services"]
