"""exec on Nomad over MCP (streamable HTTP) against Nomad's own alloc exec websocket on the same allocation.

One service (the bench hello app, runsc) is deployed through agenthost on the Nomad dev agent; then the same
short command runs alternately through the `exec` tool of a running `agenthost serve` and through a bare
websocket session of `/v1/client/allocation/<id>/exec` (open, close stdin, read frames until the exit
status), so both see the same machine. agenthost's side also pays for auth, the store, the audit row, the
exec wrapper (env, workdir, the killer's marker) and the inspects around the exec.

    .venv/bin/python bench/nomad_exec.py [ROUNDS]
(starts the dev agent with infra/nomad.sh when it is not running, and stops it again afterwards)
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import anyio
import docker
import httpx
import httpx2
from serving import http_client

from common import Platform, build_hello, report, tool

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.nomad_agent import NOMAD_ADDR, start_dev_agent, stop_dev_agent  # noqa: E402

COMMAND = ["echo", "hello"]


async def raw_exec(ws_url: str) -> tuple[int, bytes]:
    """One alloc exec session as a bare client runs it: the exit code and stdout."""
    out = bytearray()
    async with httpx2.AsyncClient(timeout=30) as client, client.websocket(ws_url) as ws:
        await ws.send_text(json.dumps({"stdin": {"close": True}}))
        while True:
            frame = json.loads(await ws.receive_text())
            if frame.get("exited"):
                return int((frame.get("result") or {}).get("exit_code", 0)), bytes(out)
            data = (frame.get("stdout") or {}).get("data")
            if data:
                out += base64.b64decode(data)


async def main(rounds: int) -> None:
    started_agent = start_dev_agent()
    engine = docker.from_env(version="auto")
    image = build_hello(engine)
    platform = Platform(AGENTHOST_BACKEND="nomad", AGENTHOST_NOMAD_ADDR=NOMAD_ADDR, AGENTHOST_SANDBOX_POOL_SIZE="0")
    ours: list[float] = []
    raw: list[float] = []
    try:
        async with http_client(platform) as mcp:
            svc = await tool(mcp, "deploy_service", {"name": "target", "image": image, "port": 8000})
            assert svc["status"] == "running", svc
            allocs = httpx.get(f"{NOMAD_ADDR}/v1/job/ah-{svc['id']}/allocations", timeout=30).json()
            alloc = next(a["ID"] for a in allocs if a["ClientStatus"] == "running")
            query = httpx.QueryParams({"task": "main", "tty": "false", "command": json.dumps(COMMAND)})
            ws_url = f"{NOMAD_ADDR.replace('http', 'ws', 1)}/v1/client/allocation/{alloc}/exec?{query}"
            for _ in range(3):  # warm-up, untimed
                await tool(mcp, "exec", {"service": "target", "command": COMMAND})
                await raw_exec(ws_url)
            for _ in range(rounds):
                t = time.monotonic()
                r = await tool(mcp, "exec", {"service": "target", "command": COMMAND})
                ours.append(time.monotonic() - t)
                assert r["exit_code"] == 0 and "hello" in r["stdout"], r
                t = time.monotonic()
                code, stdout = await raw_exec(ws_url)
                raw.append(time.monotonic() - t)
                assert code == 0 and stdout == b"hello\n", (code, stdout)
            await tool(mcp, "delete_service", {"service": "target", "confirm": True})
    finally:
        if started_agent:
            stop_dev_agent()
    report(f"exec {' '.join(COMMAND)!r} in a runsc service on Nomad", ours, raw, "alloc exec")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
