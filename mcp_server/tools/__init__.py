"""Tool modules, one per domain noun. Importing this package fills the registry."""

from __future__ import annotations

from . import exec, keys, platform, sandboxes, services, ssh

__all__ = ["exec", "keys", "platform", "sandboxes", "services", "ssh"]
