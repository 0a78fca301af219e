"""Stopping a build's stream: the engine is told to stop, and what it says until it is done is still read."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from orchestrator.backends.docker.build_stream import Job, Parser, Stopped

pytestmark = pytest.mark.anyio


class _Engine:
    """The engine's end of a build request: it streams a step, and once the client has shut its side
    (which the engine takes as a cancel) commits the step that was finishing and ends the stream, or
    (``ends=False``) keeps the stream open until released."""

    def __init__(self, ends: bool) -> None:
        self.client, self.server = socket.socketpair()
        self.ends = ends
        self.cancelled = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _send(self, chunk: dict[str, str]) -> None:
        self.server.sendall(json.dumps(chunk).encode() + b"\n")

    def _serve(self) -> None:
        self._send({"stream": "Step 2/3 : RUN make\n"})
        self._send({"stream": " ---> Running in 0123456789ab\n"})
        if self.server.recv(1) == b"":  # the client shut its side: a cancel
            self.cancelled.set()
        if self.ends:
            self._send({"stream": " ---> fedcba987654\n"})  # the step finished as it was cancelled
            self._send({"stream": "Build cancelled\n"})
            self._send({"error": "Build cancelled"})
        else:
            self.release.wait(10)
        self.server.close()

    def close(self) -> None:
        self.release.set()
        self.thread.join(10)
        self.client.close()


class _Api:
    """The parts of docker-py's APIClient a Job uses, over the client's end of the socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.posted = False

    def _url(self, path: str) -> str:
        return path

    def _post(self, url: str, **kwargs: Any) -> _Api:
        self.posted = True
        return self

    def _raise_for_status(self, resp: object) -> None:
        return None

    def _get_raw_response_socket(self, resp: object) -> socket.socket:
        return self.sock

    def _stream_helper(self, resp: object, decode: bool) -> Iterator[dict[str, Any]]:
        with self.sock.makefile("rb") as f:
            for line in f:
                yield json.loads(line)

    def close(self) -> None:
        return None


async def _run(job: Job, parser: Parser) -> Exception | None:
    def work() -> Exception | None:
        try:
            job.run(parser.feed)
        except Stopped as exc:
            return exc
        return None

    return await anyio.to_thread.run_sync(work)


async def _stop_when_running(job: Job, parser: Parser, engine: _Engine, kill: bool) -> None:
    while "0123456789ab" not in parser.containers:
        await anyio.sleep(0.01)
    job.abort()
    if kill:
        await anyio.to_thread.run_sync(engine.cancelled.wait, 10)
        job.kill()


async def test_abort_reads_until_the_engine_is_done_and_sees_a_late_layer() -> None:
    engine = _Engine(ends=True)
    job, parser = Job(_Api(engine.client), {}, io.BytesIO()), Parser()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_when_running, job, parser, engine, False)
                assert await _run(job, parser) is None
    finally:
        engine.close()
    assert engine.cancelled.is_set()
    assert job.ended and job.finished.is_set()
    assert parser.layers == ["fedcba987654"]
    assert parser.error == "Build cancelled"


async def test_kill_cuts_a_stream_the_engine_does_not_end() -> None:
    engine = _Engine(ends=False)
    job, parser = Job(_Api(engine.client), {}, io.BytesIO()), Parser()
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_stop_when_running, job, parser, engine, True)
                assert isinstance(await _run(job, parser), Stopped)
    finally:
        engine.close()
    assert engine.cancelled.is_set()
    assert not job.ended and job.finished.is_set()
    assert parser.layers == []


async def test_abort_before_the_request_sends_nothing() -> None:
    client, server = socket.socketpair()
    api = _Api(client)
    job, parser = Job(api, {}, io.BytesIO()), Parser()
    job.abort()
    try:
        with anyio.fail_after(10):
            assert isinstance(await _run(job, parser), Stopped)
    finally:
        client.close()
        server.close()
    assert not api.posted and not job.ended and job.finished.is_set()
