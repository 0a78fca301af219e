"""An exec whose container dies: the engine (runsc) keeps the exec's stream open until the deadline, so
exec_sync must notice the container stopped or was restarted and end the wait without an exit status."""

from __future__ import annotations

import socket
import struct
from typing import Any

import docker.errors
import pytest

from orchestrator.backends.docker.exec import exec_sync


class FakeApi:
    """The engine's exec API: a stream that never ends, and a container whose later inspections say ``after``."""

    def __init__(self, after: dict[str, Any] | None) -> None:
        self.after = after
        self.inspections = 0
        self.kept: socket.socket | None = None

    def inspect_container(self, container: str) -> dict[str, Any]:
        self.inspections += 1
        if self.inspections == 1:
            return {"State": {"Running": True, "StartedAt": "2026-11-30T21:00:00Z"}}
        if self.after is None:
            raise docker.errors.NotFound("no such container")
        return {"State": self.after}

    def exec_create(self, container: str, cmd: list[str], **kwargs: Any) -> dict[str, str]:
        return {"Id": "killer" if "ah-kill" in cmd else "e1"}

    def exec_start(self, exec_id: str, socket: bool) -> socket.socket:
        ours, engine = _socketpair()
        if exec_id == "killer":  # the deadline's kill: it answers, and the command's stream ends
            engine.sendall(struct.pack(">BxxxL", 1, 2) + b"1\n")
            engine.close()
            if self.kept is not None:
                self.kept.close()
            return ours
        engine.sendall(struct.pack(">BxxxL", 1, 6) + b"begun\n")
        self.kept = engine  # held open: the stream never ends on its own
        return ours

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"Running": True, "ExitCode": None}  # what the engine says of an exec in a dead sandbox


def _socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


@pytest.mark.parametrize(
    "after",
    [
        {"Running": True, "StartedAt": "2026-11-30T21:00:07Z"},  # restarted by its restart policy
        {"Running": False, "StartedAt": "2026-11-30T21:00:00Z"},  # stopped
        None,  # removed
    ],
    ids=["restarted", "stopped", "removed"],
)
def test_exec_in_a_container_that_died_ends_without_exit_status(after: dict[str, Any] | None) -> None:
    api = FakeApi(after)
    res = exec_sync(api, "ah-db_x", ["sleep", "600"], 600, None, None, None, 4096)
    assert res.exit_code is None
    assert not res.timed_out  # it returned long before its 600 s deadline
    assert res.stdout == "begun\n"
    assert api.kept is not None
    api.kept.close()


def test_exec_that_ends_because_its_container_died_has_no_exit_status() -> None:
    api = FakeApi({"Running": True, "StartedAt": "2026-11-30T21:00:07Z"})
    api.exec_inspect = lambda exec_id: {"Running": False, "ExitCode": 128}  # type: ignore[method-assign]
    original = api.exec_start

    def start_and_end(exec_id: str, socket: bool) -> socket.socket:
        ours = original(exec_id, socket)
        assert api.kept is not None
        api.kept.close()  # runsc ends the exec: "urpc method containerManager.WaitPID failed: EOF"
        return ours

    api.exec_start = start_and_end  # type: ignore[method-assign]
    res = exec_sync(api, "ah-db_x", ["sleep", "600"], 600, None, None, None, 4096)
    assert res.exit_code is None and not res.timed_out


def test_exec_in_a_running_container_is_not_cut_off() -> None:
    api = FakeApi({"Running": True, "StartedAt": "2026-11-30T21:00:00Z"})
    res = exec_sync(api, "ah-db_x", ["sleep", "600"], 1.5, None, None, None, 4096)
    assert res.timed_out
    assert api.inspections >= 2  # it looked, and the container was still the same


class LateNews(FakeApi):
    """runsc ends the exec with 128 as the sandbox dies; the engine sees the container restarted only at its
    fourth inspection (seen in CI: a restore's error was runsc's, not that its database had died)."""

    def inspect_container(self, container: str) -> dict[str, Any]:
        self.inspections += 1
        started = "2026-11-30T21:00:07Z" if self.inspections >= 4 else "2026-11-30T21:00:00Z"
        return {"State": {"Running": True, "StartedAt": started}}

    def exec_start(self, exec_id: str, socket: bool) -> socket.socket:
        ours = super().exec_start(exec_id, socket)
        assert self.kept is not None
        self.kept.close()
        return ours

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"Running": False, "ExitCode": self.code}

    code = 128


def test_exit_128_waits_for_the_engine_to_see_the_container_died() -> None:
    api = LateNews(None)
    res = exec_sync(api, "ah-db_x", ["sleep", "600"], 600, None, None, None, 4096)
    assert res.exit_code is None and not res.timed_out, res
    assert api.inspections >= 4


def test_any_other_exit_status_is_the_commands_own() -> None:
    api = LateNews(None)
    api.code = 3
    res = exec_sync(api, "ah-db_x", ["sh", "-c", "exit 3"], 600, None, None, None, 4096)
    assert res.exit_code == 3
    assert api.inspections == 1  # at the start only: a status under 128 is the command's own, no waiting
