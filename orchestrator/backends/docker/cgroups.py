"""A pids cgroup per build, made on this host: the ``cgroupparent`` of the build's step containers.

Docker's build API has no pids limit, but it takes a cgroup parent, and ``pids.max`` on a parent
holds for everything beneath it: under runc the step's processes, under runsc the sandbox's own
threads plus one host stub process per guest process (measured: a trivial step needs about 80).
Only the cgroupfs driver takes a plain path as parent (systemd wants a slice, not made here), and
only when the engine runs on this host. Names carry the pid of the process that made them, so
``sweep`` removes those a dead process left; ``remove`` and ``sweep`` only ever remove empty cgroups.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["BuildCgroup", "unsupported_reason", "sweep"]

ROOT = Path("/sys/fs/cgroup")
PREFIX = "agenthost-build."


def unsupported_reason(driver: str, version: str, local: bool) -> str | None:
    """None when a per-build pids cgroup can be made for the engine, else why not (for a note)."""
    if not local:
        return "the engine is not on this host"
    if driver != "cgroupfs":
        return f"the engine's cgroup driver is {driver!r}, and only 'cgroupfs' takes a per-build cgroup here"
    base = ROOT / "pids" if version == "1" else ROOT
    if version == "2":
        try:
            if "pids" not in (ROOT / "cgroup.controllers").read_text().split():
                return "the cgroup v2 pids controller is not available"
        except OSError:
            return "cgroup v2 is not mounted at /sys/fs/cgroup"
    elif not base.is_dir():
        return "the cgroup v1 pids controller is not mounted at /sys/fs/cgroup/pids"
    if not os.access(base, os.W_OK):
        return "agenthost may not create cgroups (it must run as root)"
    return None


class BuildCgroup:
    """One build's pids cgroup; ``parent`` is what the engine's ``cgroupparent`` takes."""

    def __init__(self, version: str, limit: int) -> None:
        self.version = version
        self.limit = limit
        self.name = f"{PREFIX}{os.getpid()}.{os.urandom(6).hex()}"
        if version == "2":
            _write(ROOT / "cgroup.subtree_control", "+pids")
            path = ROOT / self.name
        else:
            path = ROOT / "pids" / self.name
        path.mkdir(mode=0o755)
        try:
            _write(path / "pids.max", str(limit))
        except OSError:
            path.rmdir()
            raise

    @property
    def parent(self) -> str:
        return f"/{self.name}"

    def remove(self) -> bool:
        """Remove it from every hierarchy the engine made it in. False while a step container is still in it."""
        return _remove(self.name, self.version)


def sweep(version: str) -> list[str]:
    """Remove the empty build cgroups of processes that are gone. Returns their names."""
    base = ROOT if version == "2" else ROOT / "pids"
    removed = []
    for path in base.glob(f"{PREFIX}*"):
        pid = path.name[len(PREFIX) :].split(".")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and _remove(path.name, version):
            removed.append(path.name)
    return removed


def _remove(name: str, version: str) -> bool:
    dirs = [ROOT / name] if version == "2" else [h / name for h in ROOT.iterdir() if (h / name).is_dir()]
    done = True
    for path in dirs:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            done = False
    return done


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)
