"""Sandboxes: ephemeral isolated containers (manager), served from a warm pool (pool)."""

from .manager import Network, Sandbox, SandboxList, SandboxManager, SandboxRequest
from .pool import WarmPool

__all__ = ["Network", "Sandbox", "SandboxList", "SandboxManager", "SandboxRequest", "WarmPool"]
