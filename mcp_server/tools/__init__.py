"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import backups, databases, keys, platform, services

__all__ = ["backups", "databases", "keys", "platform", "services"]
