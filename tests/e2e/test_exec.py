"""exec through a real MCP client: exit codes, streams, stdin, env, bounds, deadlines and leaked processes."""

from __future__ import annotations

import re
import time

import docker
import pytest

from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

UNTRUSTED = "<<<UNTRUSTED WORKLOAD OUTPUT"


def body(text: str) -> str:
    """The workload text inside the untrusted-data boundary."""
    if not text:
        return ""
    assert text.startswith(UNTRUSTED), text[:200]
    return text.split("\n", 1)[1].rsplit("\n", 1)[0]


def live_processes(container: docker.models.containers.Container) -> list[str]:
    """Every process still alive in the container (zombies excluded), seen through the engine, not agenthost."""
    out = container.exec_run(["ps", "-eo", "stat=,args="]).output.decode()
    return [line.split(None, 1)[1] for line in out.splitlines() if line.strip() and not line.lstrip().startswith("Z")]


async def test_exec_in_service(
    agenthost: AgentHost, hello_image: str, transport: str, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant(f"exec-{transport}")
    async with connect(agenthost, key, transport) as client:
        svc = await call(
            client,
            "deploy_service",
            {"name": "app", "image": hello_image, "port": 8000, "env": {"API_TOKEN": "tok-5f3a9c1e"}},
        )
        assert svc["status"] == "running", svc
        container = docker_client.containers.get(f"ah-{svc['id']}")

        async def ex(**args: object) -> dict:
            return await call(client, "exec", {"service": "app", **args})

        r = await ex(command=["sh", "-c", "echo to-out; echo to-err >&2; exit 3"])
        assert r["exit_code"] == 3 and not r["timed_out"] and not r["truncated"]
        assert body(r["stdout"]) == "to-out\n" and body(r["stderr"]) == "to-err\n"
        assert r["target"] == "service app" and r["output_limit_bytes"] == 64 * 1024

        r = await ex(command="echo $((6 * 7)) | tr 4 X")
        assert (r["exit_code"], body(r["stdout"])) == (0, "X2\n")
        r = await ex(command=["sh", "-c", "pwd; echo $GREETING"], env={"GREETING": "hi there"}, workdir="/tmp")
        assert body(r["stdout"]) == "/tmp\nhi there\n"
        r = await ex(command=["printenv", "API_TOKEN"])
        assert "tok-5f3a9c1e" not in r["stdout"] and "****" in r["stdout"]

        r = await ex(command=["no-such-binary", "--flag"])
        assert r["exit_code"] == 127 and "command not found: no-such-binary" in r["stderr"]
        assert "not found" in r["note"]

        # 10 MB of output: bounded, head and tail kept, nothing blocks.
        r = await ex(command="head -c 10485760 /dev/zero | tr '\\0' x; echo; echo TAIL-MARK", timeout_s=120)
        assert r["exit_code"] == 0 and r["truncated"] and not r["timed_out"]
        out = body(r["stdout"])
        assert len(out.encode()) < 64 * 1024 + 200
        assert out.startswith("xxxx") and out.endswith("TAIL-MARK\n")
        assert re.search(r"\[\.\.\. (\d+) bytes omitted", out)
        assert "bounded" in r["note"] or "cut" in r["note"]

        # A deadline kills the command inside the container, and the service itself carries on.
        began = time.monotonic()
        r = await ex(command=["sleep", "3005"], timeout_s=2)
        assert r["timed_out"] and r["exit_code"] is None and "killed" in r["note"]
        assert time.monotonic() - began < 30
        assert not [p for p in live_processes(container) if "sleep 300" in p], live_processes(container)

        r = await ex(command=["cat"], stdin="line one\nline two\n")
        assert body(r["stdout"]) == "line one\nline two\n"
        r = await ex(command=["wc", "-c"], stdin="z" * 1_000_000)
        assert body(r["stdout"]).strip() == "1000000"
        assert not [p for p in live_processes(container) if "ah-kill" in p or "ah-exec" in p]
        container.reload()
        assert container.status == "running" and container.attrs["RestartCount"] == 0, "the service itself survived"

        # Long commands stream their output while they run.
        seen: list[tuple[float, str]] = []

        async def on_progress(p: float, total: float | None, message: str | None) -> None:
            seen.append((time.monotonic(), message or ""))

        began = time.monotonic()
        r = await call(
            client,
            "exec",
            {"service": "app", "command": "for i in 1 2 3 4; do echo tick-$i; sleep 1; done"},
            progress_callback=on_progress,
        )
        finished = time.monotonic()
        assert body(r["stdout"]) == "tick-1\ntick-2\ntick-3\ntick-4\n"
        early = [t for t, m in seen if "tick-1" in m]
        assert early and early[0] < finished - 1.5, seen
        assert all(m.startswith(UNTRUSTED) for _, m in seen)

        # Bad targets.
        for args, code in [
            ({"service": "nope", "command": ["true"]}, "not_found"),
            ({"command": ["true"]}, "invalid_input"),
            ({"service": "app", "sandbox": "x", "command": ["true"]}, "invalid_input"),
            ({"service": "app", "command": []}, "invalid_input"),
            ({"service": "app", "command": ["true"], "env": {"AGENTHOST_X": "1"}}, "invalid_input"),
        ]:
            with pytest.raises(ToolFailed) as err:
                await call(client, "exec", args)
            assert err.value.code == code, (args, err.value)

        await call(client, "stop_service", {"service": "app"})
        with pytest.raises(ToolFailed) as err:
            await ex(command=["true"])
        assert err.value.code == "invalid_input" and "not running" in err.value.message

    # Another tenant cannot reach it.
    async with connect(agenthost, agenthost.tenant(f"exec-other-{transport}"), transport) as other:
        with pytest.raises(ToolFailed) as err:
            await call(other, "exec", {"service": "app", "command": ["true"]})
        assert err.value.code == "not_found"

    async with connect(agenthost, key, transport) as client:
        await call(client, "delete_service", {"service": "app", "confirm": True})
