"""Running Caddy for agenthost (``agenthost ingress run``): its files in ``<data_dir>/ingress``, its first
configuration rendered from the state, so a restarted Caddy serves every route before the next sync."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from ..errors import Conflict
from ..settings import Settings
from .traffic import access_dir

__all__ = ["MIGRATE_REQ", "caddy_command", "clear_stale_socket", "migrate_queued_connections"]

# Caddy binds a new listening socket (SO_REUSEPORT) on every configuration load and closes the previous one;
# the kernel resets the connections still queued on a closed one unless it may hand them to its sibling.
MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def clear_stale_socket(path: Path) -> None:
    """Remove an admin socket a dead Caddy left, so that a new one can listen there.

    Raises: Conflict when a live Caddy still answers on it.
    """
    if not path.exists():
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise Conflict(f"a Caddy already listens on {path}", "stop it first, or leave it running: agenthost programs it")


def caddy_command(settings: Settings, config: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Write ``config`` to ``<data_dir>/ingress/caddy.json`` (0600) and return the argv and environment that run
    Caddy on it, with its home and XDG directories inside the data dir (no file of it lands elsewhere)."""
    settings.ingress_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(settings.ingress_dir, 0o700)
    access_dir(settings).mkdir(mode=0o700, exist_ok=True)  # Caddy's request logs (traffic.py), root only
    path = settings.ingress_dir / "caddy.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out, indent=1)
    home = str(settings.ingress_dir)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": home,
        "XDG_DATA_HOME": home,
        "XDG_CONFIG_HOME": home,
    }
    return [settings.caddy_bin, "run", "--config", str(path)], env


def migrate_queued_connections(knob: Path = MIGRATE_REQ) -> str | None:
    """Let the kernel move connections queued on a listener Caddy closes to the one that replaces it
    (``net.ipv4.tcp_migrate_req``, Linux 5.14 and later, per network namespace), so that a reload resets no
    client. Returns why it could not, or None."""
    try:
        if knob.read_text().strip() != "1":
            knob.write_text("1\n")
    except OSError as exc:
        return f"cannot set net.ipv4.tcp_migrate_req=1 ({exc.strerror or exc}): a reload may reset a few clients"
    return None
