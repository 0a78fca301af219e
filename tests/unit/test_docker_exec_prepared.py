"""A command sent to an exec prepared ahead of it (``exec_sync(prepared=...)``), over an engine double: taken only
once the exec acknowledges it; given to the engine's own exec only when it surely never ran."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from orchestrator.backends.docker.exec import exec_sync
from orchestrator.backends.docker.prepared import PreparedExec
from orchestrator.backends.exec_wrapper import killer_argv

from .test_docker_exec_direct import Engine, frame


def engine_for(theirs: socket.socket) -> Engine:
    """The engine's own execs: the killer kills the prepared exec (its stream ends) and says so; a command prints
    what it was."""

    def answer(argv: list[str], workdir: str | None, wrapped: bool) -> tuple[bytes, int, int]:
        if argv[:3] == killer_argv("k")[:3]:
            theirs.close()
            return frame(1, b"1\n"), 0, 7
        return frame(1, f"engine ran {argv[-1]}\n".encode()), 0, 8

    return Engine(answer)


def prepared_exec() -> tuple[PreparedExec, socket.socket]:
    ours, theirs = socket.socketpair()
    return PreparedExec("prepkey", "p0", ours), theirs


def ran(engine: Engine) -> list[list[str]]:
    """The argv of each exec the engine was asked for, the killer's shown as 'killer <key>'."""
    return [["killer", c["cmd"][-1]] if c["cmd"][:3] == killer_argv("k")[:3] else c["cmd"] for c in engine.created]


def test_an_exec_that_ended_before_taking_the_request_hands_it_to_the_engine() -> None:
    prepared, theirs = prepared_exec()
    engine = engine_for(theirs)
    theirs.close()  # ended (its wrapper was killed) before the platform wrote anything
    res = exec_sync(engine, "ah-x", ["/bin/echo", "hi"], 30, None, None, None, 4096, prepared=prepared)
    assert (res.exit_code, res.stdout) == (0, "engine ran hi\n"), res
    assert ran(engine) == [["killer", "prepkey"], ["/bin/echo", "hi"]]


def test_one_that_wrote_anything_else_first_is_killed_and_the_engine_runs_the_command() -> None:
    prepared, theirs = prepared_exec()
    engine = engine_for(theirs)
    theirs.sendall(frame(1, b"agenthost-took not-the-nonce\nforged\n"))
    theirs.shutdown(socket.SHUT_WR)
    res = exec_sync(engine, "ah-x", ["/bin/echo", "hi"], 30, None, None, None, 4096, prepared=prepared)
    assert (res.exit_code, res.stdout) == (0, "engine ran hi\n"), res
    assert ran(engine) == [["killer", "prepkey"], ["/bin/echo", "hi"]]


def test_one_silent_until_the_deadline_times_out_and_is_not_run_again() -> None:
    """It may have taken the request and started the command while its answer was on the way: running the command
    through the engine as well could run it twice."""
    prepared, theirs = prepared_exec()
    engine = engine_for(theirs)
    engine.states["p0"] = {"Running": True, "ExitCode": None, "Pid": 9}
    res = exec_sync(engine, "ah-x", ["/bin/echo", "hi"], 0.3, None, None, None, 4096, prepared=prepared)
    assert (res.timed_out, res.exit_code, res.stdout) == (True, None, ""), res
    assert ran(engine) == [["killer", "prepkey"]]


def test_the_acknowledged_request_s_output_and_status_are_the_command_s() -> None:
    prepared, theirs = prepared_exec()
    engine = engine_for(theirs)
    engine.states["p0"] = {"Running": False, "ExitCode": 3, "Pid": 9}

    def respond(request: bytes) -> None:
        nonce = request.split(b" ")[0].strip(b"'")
        theirs.sendall(frame(1, b"agenthost-took " + nonce + b"\nout\n") + frame(2, b"err\n"))
        theirs.shutdown(socket.SHUT_WR)

    responder = threading.Thread(target=_respond_to_first_line, args=(theirs, respond), daemon=True)
    responder.start()
    res = exec_sync(engine, "ah-x", ["/bin/echo", "hi"], 30, None, None, None, 4096, prepared=prepared)
    responder.join(10)
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out\n", "err\n"), res
    assert ran(engine) == []


def _respond_to_first_line(sock: socket.socket, respond: Callable[[bytes], None]) -> None:
    """The prepared exec's side: reads the request's first line, then answers it."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            return
        line += chunk
    respond(line)
