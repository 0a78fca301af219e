"""SSH access to services and sandboxes: one gateway for the platform (gateway), the keys and who may log in (manager),
the gateway's host key (hostkey) and key validation (keys)."""

from .gateway import SshGateway
from .manager import AuthorizedKey, Kind, SshInfo, SshManager, Target

__all__ = ["AuthorizedKey", "Kind", "SshGateway", "SshInfo", "SshManager", "Target"]
