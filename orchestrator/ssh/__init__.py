"""SSH access to a service: the use-cases (manager), the sshd sidecar that follows its service (sidecar),
and the keys (keys)."""

from .manager import SSH_USER, AuthorizedKey, SshInfo, SshManager
from .sidecar import SSH_PORT, SshSidecars

__all__ = ["SSH_PORT", "SSH_USER", "AuthorizedKey", "SshInfo", "SshManager", "SshSidecars"]
