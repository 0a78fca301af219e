"""A Nomad exec whose task goes away is lost at once, even when Nomad keeps the session's stream open (seen under
load: the stream of a restarted service's exec stayed open until the deadline). A stand-in for Nomad's exec
websocket that never ends a session plays that Nomad here."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import anyio
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.backends.base import ExecSpec
from orchestrator.backends.nomad.exec import Gone, exec_in_alloc, run_in_alloc

pytestmark = pytest.mark.anyio


class NeverEnding:
    """Accepts exec sessions, reads what the client sends and never answers with an exit status."""

    def __init__(self) -> None:
        self.sessions = 0

    async def serve(self, ws: WebSocket) -> None:
        self.sessions += 1
        await ws.accept()
        try:
            while True:
                await ws.receive_text()
        except WebSocketDisconnect:
            return


@pytest.fixture
async def nomad() -> AsyncIterator[tuple[NeverEnding, str]]:
    handler = NeverEnding()
    app = Starlette(routes=[WebSocketRoute("/exec", handler.serve)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()  # connections wait in the backlog until the server takes them: no start-up race
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        yield handler, f"ws://127.0.0.1:{sock.getsockname()[1]}/exec"
        server.should_exit = True
    sock.close()


def _gone_after(checks: int) -> tuple[list[int], Gone]:
    seen = [0]

    async def gone() -> bool:
        seen[0] += 1
        return seen[0] > checks

    return seen, gone


async def test_a_session_whose_task_is_gone_is_lost_not_timed_out(nomad: tuple[NeverEnding, str]) -> None:
    _, url = nomad
    seen, gone = _gone_after(1)
    result = await run_in_alloc(lambda argv: url, None, ["sleep", "300"], timeout_s=60, gone=gone)
    assert result.exit_code is None and not result.timed_out, result
    assert seen[0] == 2  # running at the first look, gone at the second


async def test_a_lost_exec_whose_task_is_gone_sends_no_killer(nomad: tuple[NeverEnding, str]) -> None:
    handler, url = nomad
    _, gone = _gone_after(0)
    spec = ExecSpec(argv=["sleep", "300"], timeout_s=60)
    result = await exec_in_alloc(lambda argv: url, None, spec, gone)
    assert result.exit_code is None and not result.timed_out, result
    assert handler.sessions == 1  # the command's own session; no killer: the task's processes died with it


async def test_without_a_watch_the_deadline_still_ends_a_session_nomad_keeps_open(
    nomad: tuple[NeverEnding, str],
) -> None:
    _, url = nomad
    result = await run_in_alloc(lambda argv: url, None, ["sleep", "300"], timeout_s=0.5)
    assert result.timed_out and result.exit_code is None, result
