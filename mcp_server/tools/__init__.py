"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import backups, builds, databases, keys, nodes, platform, services

__all__ = ["backups", "builds", "databases", "keys", "nodes", "platform", "services"]
