"""The Docker backend's map of prepared execs (orchestrator/backends/docker/prepared.py), over socket pairs."""

from __future__ import annotations

import socket

from orchestrator.backends.docker.prepared import PreparedExec, PreparedExecs


def _prepared(key: str) -> tuple[PreparedExec, socket.socket]:
    ours, engines = socket.socketpair()
    return PreparedExec(key, f"exec-{key}", ours), engines


def test_an_exec_that_ended_elsewhere_is_closed_when_the_next_one_is_put() -> None:
    # Another process of the same data dir claimed the sandbox and removed it: the engine ended the exec,
    # and this process never hears of the workload again. Its socket must not stay open until shutdown.
    execs = PreparedExecs()
    gone, gone_engine = _prepared("gone")
    waiting, waiting_engine = _prepared("waiting")
    execs.put("sbx-gone", gone)
    execs.put("sbx-waiting", waiting)
    gone_engine.close()

    fresh, _fresh_engine = _prepared("fresh")
    execs.put("sbx-fresh", fresh)

    assert gone.sock.fileno() == -1
    assert execs.take("sbx-gone") is None
    assert execs.take("sbx-waiting") is waiting
    assert waiting.sock.fileno() != -1
    assert execs.take("sbx-fresh") is fresh
    waiting_engine.close()


def test_an_exec_that_wrote_before_its_request_is_given_up_too() -> None:
    execs = PreparedExecs()
    chatty, engine = _prepared("chatty")
    execs.put("sbx-chatty", chatty)
    engine.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")

    other, _other_engine = _prepared("other")
    execs.put("sbx-other", other)

    assert execs.take("sbx-chatty") is None
    assert chatty.sock.fileno() == -1
    engine.close()


def test_putting_a_second_exec_for_a_workload_closes_the_first() -> None:
    execs = PreparedExecs()
    first, _e1 = _prepared("first")
    second, _e2 = _prepared("second")
    execs.put("sbx", first)
    execs.put("sbx", second)
    assert first.sock.fileno() == -1
    assert second.sock.fileno() != -1
    execs.close()
    assert second.sock.fileno() == -1
    assert execs.take("sbx") is None
