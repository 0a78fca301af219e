"""Which process runs an operation, in a form that outlives the process: ``host:pid:start-time``.

Builds and backups record it on their rows. The start time tells a live process from a dead one
whose pid was reused, and the host a row that came with a data dir copied from another machine.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

__all__ = ["on_this_host", "owner_alive", "owner_token"]


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


def owner_token() -> str:
    """This process, told apart from a later one that reuses its pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{_proc_start(os.getpid())}"


def _parts(owner: str) -> tuple[str, str, str]:
    host, _, rest = owner.partition(":")
    pid, _, started = rest.partition(":")
    return host, pid, started


def on_this_host(owner: str | None) -> bool:
    """Whether ``owner`` names a process of this machine, whose liveness /proc can tell."""
    if not owner:
        return False
    host, pid, _ = _parts(owner)
    return host == socket.gethostname() and pid.isdigit()


def owner_alive(owner: str | None) -> bool:
    """Whether the process ``owner`` names runs on this machine now (False for any other machine's)."""
    if not owner or not on_this_host(owner):
        return False
    _, pid, started = _parts(owner)
    return _proc_start(int(pid)) == started
