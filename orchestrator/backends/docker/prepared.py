"""Execs started ahead of their command: the engine's exec path paid before a sandbox's first command is known.

A pooled sandbox's container holds one (``DockerBackend.prepare_exec``), started once it is warm: the wrapper's
prepared form (``exec_wrapper.PREPARED_WRAPPER``), its stdin open, waiting in ``read``. The first exec in the
sandbox takes it (``take``) and writes its request there: the command starts at once instead of after dockerd,
containerd, the shim and the runtime's exec (about 95 ms here, under runc as under runsc). The map is this
process's own: a sandbox claimed by another process of the same data dir, or after a restart, has none and execs
through the engine as before (the process that prepared it closes its stream once the engine has ended it, when it
next prepares one: ``PreparedExecs.put``). Giving one up (the workload removed, stopped or restarted, the backend
closed) closes its stream, and its wrapper exits on the end of its input without running anything.

Before the first exec, no tenant code runs in the sandbox, but a tenant's SSH session could: it runs as the
same user and could end the waiting wrapper, or read or write its input. That reaches only the tenant's own
sandbox, and the platform reads the command's output only after the wrapper has acknowledged the request by its
nonce (``exec_wrapper.prepared_request``): an exec that ended or ran something else first is killed by its
marker and the command runs through the engine's own exec.
"""

from __future__ import annotations

import select
from dataclasses import dataclass
from typing import Any

import docker.errors

from ...errors import InvalidInput, NotFound
from ...labels import container_name
from ..exec_wrapper import EXEC_MARKER, new_key, prepared_argv

__all__ = ["PreparedExec", "PreparedExecs", "prepare_sync"]


@dataclass
class PreparedExec:
    """An exec the engine has started with its stdin open, its wrapper waiting for one request (used once)."""

    key: str
    exec_id: str
    sock: Any  # what exec_start(socket=True) returned

    def close(self) -> None:
        """Give it up unused: its wrapper reads the end of its input and exits, running nothing."""
        self.raw.close()

    @property
    def raw(self) -> Any:
        """The socket under docker-py's wrapper of the exec's stream."""
        return getattr(self.sock, "_sock", self.sock)

    def ended(self) -> bool:
        """Whether its stream has anything to read: the exec ended (the engine closed the stream) or wrote before
        any request, and either way can no longer take one."""
        return self.raw.fileno() == -1 or bool(select.select([self.raw], [], [], 0)[0])


def prepare_sync(api: Any, workload_id: str) -> PreparedExec:
    """Start an exec in the workload's container that waits for its command.

    Raises: NotFound when it has no container; InvalidInput when that is not running."""
    key = new_key()
    try:
        exec_id = api.exec_create(
            container_name(workload_id), prepared_argv(key), stdin=True, environment={EXEC_MARKER: key}
        )["Id"]
    except docker.errors.NotFound as exc:
        raise NotFound(f"workload {workload_id} has no container", "deploy or start it again") from exc
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        raise InvalidInput(f"workload {workload_id} is not running", "start it first") from exc
    return PreparedExec(key, exec_id, api.exec_start(exec_id, socket=True))


class PreparedExecs:
    """The prepared exec of each workload that has one, in this process; used from the event loop's thread."""

    def __init__(self) -> None:
        self._by_workload: dict[str, PreparedExec] = {}

    def put(self, workload_id: str, prepared: PreparedExec) -> None:
        """Hold ``prepared`` for the workload's next exec, giving up the one it held and every held exec that has
        ended: a sandbox claimed and removed by another process of the same data dir is never named to this one
        again, and its stream would stay open until shutdown."""
        for other in [w for w, p in self._by_workload.items() if w == workload_id or p.ended()]:
            self.drop(other)
        self._by_workload[workload_id] = prepared

    def take(self, workload_id: str) -> PreparedExec | None:
        """The workload's prepared exec, for one command (the caller uses or closes it)."""
        return self._by_workload.pop(workload_id, None)

    def drop(self, workload_id: str) -> None:
        prepared = self._by_workload.pop(workload_id, None)
        if prepared is not None:
            prepared.close()

    def close(self) -> None:
        for workload_id in list(self._by_workload):
            self.drop(workload_id)
