"""SSH access to services: one gateway for the platform (gateway), the keys and who may log in (manager),
the gateway's host key (hostkey) and key validation (keys)."""

from .gateway import SshGateway
from .manager import AuthorizedKey, SshInfo, SshManager, Target

__all__ = ["AuthorizedKey", "SshGateway", "SshInfo", "SshManager", "Target"]
