"""A program with no input starts without the wrapper's shell, and comes back to the wrapper when the engine cannot
start it: what the command sees, and what the caller gets, are the same either way."""

from __future__ import annotations

import socket
import socket as socket_module
import struct
from typing import Any

import pytest

from orchestrator.backends.docker.exec import exec_sync
from orchestrator.backends.exec_wrapper import EXEC_MARKER, WRAPPER
from orchestrator.errors import InvalidInput

ENGINE_ERROR = b'OCI runtime exec failed: executing command "nosuch" in sandbox: error finding executable: unknown\r\n'


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


class Engine:
    """Docker's exec API: each exec's stream, exit status and pid come from ``answer(argv, workdir)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.created: list[dict[str, Any]] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.streamed: dict[str, bytes] = {}
        self.ends: dict[str, socket.socket] = {}

    def inspect_container(self, container: str) -> dict[str, Any]:
        return {"State": {"Running": True, "StartedAt": "2026-12-02T10:00:00Z"}}

    def exec_create(self, container: str, cmd: list[str], **kwargs: Any) -> dict[str, str]:
        exec_id = f"e{len(self.created)}"
        self.created.append({"cmd": cmd, **kwargs})
        wrapped = cmd[:3] == ["/bin/sh", "-c", WRAPPER]
        out, code, pid = self.answer(cmd[6:] if wrapped else cmd, kwargs.get("workdir"), wrapped)
        self.streamed[exec_id], self.states[exec_id] = out, {"Running": False, "ExitCode": code, "Pid": pid}
        return {"Id": exec_id}

    def exec_start(self, exec_id: str, socket: bool) -> socket.socket:
        ours, engine = _pair()
        engine.sendall(self.streamed[exec_id])
        engine.shutdown(socket_module.SHUT_WR)  # the output ends; what the caller writes stays readable here
        self.ends[exec_id] = engine
        return ours

    def stdin_of(self, exec_id: str) -> bytes:
        end = self.ends[exec_id]
        end.setblocking(False)
        try:
            return end.recv(65536)
        except BlockingIOError:
            return b""

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self.states[exec_id]


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def test_a_program_without_input_is_started_by_the_engine_with_env_marker_and_workdir() -> None:
    engine = Engine(lambda argv, workdir, wrapped: (frame(1, b"42\n"), 0, 4242))
    res = exec_sync(engine, "ah-x", ["python3", "-c", "print(42)"], 30, None, {"A": "b c\nd"}, "/srv", 4096)
    assert (res.exit_code, res.stdout, res.stderr) == (0, "42\n", "")
    [call] = engine.created
    assert call["cmd"] == ["python3", "-c", "print(42)"] and call["workdir"] == "/srv"
    env = call["environment"]
    assert env["A"] == "b c\nd" and set(env) == {"A", EXEC_MARKER} and len(env[EXEC_MARKER]) == 16
    assert "stdin" not in call and engine.stdin_of("e0") == b""  # nothing is written: the exec has no stdin


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [(["echo", "hi"], None), (["cd", "/"], None), (["cat"], b"input"), (["/bin/sh", "-c", "read x"], b"")],
    ids=["builtin-echo", "builtin-cd", "stdin", "empty-stdin"],
)
def test_builtins_and_input_go_through_the_wrapper(argv: list[str], stdin: bytes | None) -> None:
    engine = Engine(lambda argv, workdir, wrapped: (frame(1, b"ok\n"), 0, 7))
    res = exec_sync(engine, "ah-x", argv, 30, stdin, None, None, 4096)
    assert res.exit_code == 0
    [call] = engine.created
    assert call["cmd"][:3] == ["/bin/sh", "-c", WRAPPER] and call["cmd"][6:] == argv


def test_a_program_the_engine_cannot_start_runs_again_through_the_wrapper() -> None:
    def answer(argv: list[str], workdir: str | None, wrapped: bool) -> tuple[bytes, int, int]:
        if not wrapped:
            return frame(1, ENGINE_ERROR), 126, 0  # no process was started
        return frame(2, b"agenthost: command not found: nosuch\n"), 127, 9

    streamed: list[tuple[str, str]] = []
    engine = Engine(answer)
    res = exec_sync(engine, "ah-x", ["nosuch"], 30, None, None, None, 4096, emit=lambda s, t: streamed.append((s, t)))
    assert (res.exit_code, res.stdout) == (127, "")
    assert res.stderr == "agenthost: command not found: nosuch\n"
    assert len(engine.created) == 2 and "environment" in engine.created[0]
    assert all("OCI" not in text for _, text in streamed)  # the engine's error never reached the caller


def test_a_missing_workdir_is_the_wrappers_clear_error() -> None:
    def answer(argv: list[str], workdir: str | None, wrapped: bool) -> tuple[bytes, int, int]:
        if not wrapped:
            return frame(1, b"OCI runtime exec failed: failed to find initial working directory\r\n"), 126, 0
        return frame(2, b"agenthost: workdir /nope: no such directory\n"), 125, 9

    with pytest.raises(InvalidInput, match="workdir '/nope' does not exist"):
        exec_sync(Engine(answer), "ah-x", ["ls"], 30, None, None, "/nope", 4096)


def test_a_command_that_ran_and_exited_126_is_never_run_twice() -> None:
    # A tenant's program may print the engine's words and exit 126: it ran (it has a pid), so it is its answer.
    engine = Engine(lambda argv, workdir, wrapped: (frame(1, ENGINE_ERROR), 126, 31))
    res = exec_sync(engine, "ah-x", ["./fake-error"], 30, None, None, None, 4096)
    assert res.exit_code == 126 and res.stdout == ENGINE_ERROR.decode()
    assert len(engine.created) == 1


@pytest.mark.parametrize("key", [EXEC_MARKER, "AGENTHOST_X", "A B", "1A"])
def test_attack_an_env_that_would_replace_the_marker_is_refused_before_anything_runs(key: str) -> None:
    # The killer finds an exec's processes by the marker: a tenant's env must never set it, on either path.
    engine = Engine(lambda argv, workdir, wrapped: (frame(1, b""), 0, 5))
    with pytest.raises(InvalidInput, match="invalid env var name"):
        exec_sync(engine, "ah-x", ["python3"], 30, None, {key: "other"}, None, 4096)
    assert engine.created == []
