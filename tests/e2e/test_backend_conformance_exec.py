"""The conformance suite's exec: one wrapper on every backend, the same deadlines, kills, env, workdir and notes.

Each test runs on Docker and on the three-node cluster. What is left in a workload is
read through the engine (``docker exec ps`` in the workload's container, on the cluster through the dockerd of
its node), never through agenthost.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import docker
import pytest
from docker.models.containers import Container

from .conformance import body, container_of, tenant
from .harness import AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]


def live_processes(container: Container) -> list[str]:
    """The argv of every process alive in the container (zombies excluded), seen through the engine."""
    out = container.exec_run(["ps", "-eo", "stat=,args="]).output.decode()
    return [line.split(None, 1)[1] for line in out.splitlines() if line.strip() and not line.lstrip().startswith("Z")]


async def processes_until(container: Container, predicate: Any, timeout: float = 60) -> list[str]:
    """The container's processes, polled until ``predicate`` holds for them; fails after ``timeout``."""
    with anyio.fail_after(timeout):
        while not predicate(seen := await anyio.to_thread.run_sync(live_processes, container)):
            await anyio.sleep(0.2)
    return seen


async def timed_out_exec(client: Any, container: Container, args: dict[str, Any], sleepers: list[str]) -> None:
    """Run an exec that outlives its deadline: its ``sleepers`` are seen running, then none of them is left."""
    result: dict[str, Any] = {}

    async def run() -> None:
        result["run"] = await call(client, "exec", {"timeout_s": 10, **args})

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        running = await processes_until(container, lambda ps: all(s in " ".join(ps) for s in sleepers))
    r = result["run"]
    assert r["timed_out"] and r["exit_code"] is None and "killed" in r["note"], r
    left = live_processes(container)
    assert not [p for p in left if "sleep 300" in p or "ah-kill" in p or "ah-exec" in p], (running, left)


async def test_exec_deadline_kills_the_whole_tree(host: AgentHost, docker_client: docker.DockerClient) -> None:
    """Children, grandchildren and a daemon that left the session with setsid and double-forked away from its
    parent all run, then all die at the deadline; a stdin the command never reads does not stall it. Each in a
    fresh sandbox: Debian's runsc 20221219 crashes a sandbox, now and then, after several such kills in it."""
    key = tenant(host, "conf-tree")
    tree = "sleep 3001 & (setsid sh -c 'sleep 3002 & exit' &); sh -c 'sleep 3003 & wait'; wait"
    cases = [
        ({"command": tree}, ["sleep 3001", "sleep 3002", "sleep 3003"]),
        ({"command": ["sleep", "3004"], "stdin": "z" * 1_000_000}, ["sleep 3004"]),
    ]

    async def case(client: Any, n: int, args: dict[str, Any], sleepers: list[str]) -> None:
        sbx = await call(client, "create_sandbox", {"name": f"tree-{n}"})
        container = container_of(host, docker_client, sbx["id"])
        await timed_out_exec(client, container, {"sandbox": sbx["name"], **args}, sleepers)
        await call(client, "delete_sandbox", {"sandbox": sbx["name"], "confirm": True})

    async with connect(host, key, "http") as client, anyio.create_task_group() as tg:
        for n, (args, sleepers) in enumerate(cases):  # at once: each waits out its deadline
            tg.start_soon(case, client, n, args, sleepers)


def exec_argvs(container: Container) -> list[str]:
    """The argv of every exec the engine holds for the container (what `docker inspect` shows of each), asked of
    the engine that runs it (on the cluster, its node's dockerd)."""
    api = container.client.api
    found = []
    for exec_id in api.inspect_container(container.id)["ExecIDs"] or []:
        config = api.exec_inspect(exec_id)["ProcessConfig"]
        found.append(" ".join([config["entrypoint"], *config.get("arguments", [])]))
    return found


async def test_exec_env_reaches_the_command_but_no_argv(
    host: AgentHost, platform_hello_image: str, docker_client: docker.DockerClient
) -> None:
    """While an exec runs, neither ``ps -o args`` in the workload nor the engine's record of the exec shows any of
    its env values (argv is readable by every process of the workload, and the exec's argv by whoever can
    inspect the engine; env only by its own user); the values reach the command whole, whatever bytes they
    hold, and stdin after them is intact."""
    key = tenant(host, "conf-envargv")
    secret = f"pw-{uuid.uuid4().hex[:12]}"
    tricky = f"{secret} two\nlines 'q' \"dq\" \\back $(x) %s * é\n"
    gate = f"/tmp/gate-{uuid.uuid4().hex[:8]}"
    script = f'while [ ! -e {gate} ]; do sleep 0.1; done; printf "%s|" "$PLAIN" "$TRICKY"; cat'
    stdin = "line one\nPLAIN=not-env\n\x01binary-ish\n"
    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": platform_hello_image, "port": 8000})
        assert svc["status"] == "running", svc
        container = container_of(host, docker_client, svc["id"])
        result: dict[str, Any] = {}

        async def run() -> None:
            args = {"service": "web", "command": script, "env": {"PLAIN": secret, "TRICKY": tricky}, "stdin": stdin}
            result["run"] = await call(client, "exec", {**args, "timeout_s": 120})

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            during = await processes_until(container, lambda ps: any(gate in p for p in ps))
            execs = await anyio.to_thread.run_sync(exec_argvs, container)
            await anyio.to_thread.run_sync(lambda: container.exec_run(["touch", gate]))
        assert not [p for p in during if secret in p], during
        assert [a for a in execs if gate in a] and not [a for a in execs if secret in a], execs
        r = result["run"]
        assert r["exit_code"] == 0, r
        assert body(r["stdout"]) == f"{secret}|{tricky}|{stdin}", r
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_exec_missing_workdir_and_command_say_so(host: AgentHost, platform_hello_image: str) -> None:
    """A workdir that does not exist is a clear error before anything runs; a command not on PATH is exit 127
    with a note; both leave the workload running."""
    key = tenant(host, "conf-workdir")
    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": platform_hello_image, "port": 8000})
        assert svc["status"] == "running", svc
        with pytest.raises(ToolFailed) as err:
            await call(client, "exec", {"service": "web", "command": ["ls"], "workdir": "/does/not/exist"})
        assert err.value.code == "invalid_input" and "workdir" in err.value.message, err.value
        r = await call(client, "exec", {"service": "web", "command": ["no-such-binary", "--flag"]})
        assert r["exit_code"] == 127 and "command not found: no-such-binary" in r["stderr"], r
        assert "not found" in r["note"], r
        r = await call(client, "exec", {"service": "web", "command": ["pwd"], "workdir": "/tmp"})
        assert (r["exit_code"], body(r["stdout"])) == (0, "/tmp\n"), r
        await call(client, "delete_service", {"service": "web", "confirm": True})


async def test_exec_streams_output_while_the_command_runs(host: AgentHost, platform_hello_image: str) -> None:
    """Output reaches the caller as progress while the command runs: this one waits for a file that the
    test makes only once it has seen the first line, so it can end only if that line was streamed."""
    key = tenant(host, "conf-stream")
    gate = f"/tmp/go-{uuid.uuid4().hex[:8]}"
    first_line = anyio.Event()
    messages: list[str] = []
    result: dict[str, dict[str, Any]] = {}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        if "tick-1" in (message or ""):
            first_line.set()

    async with connect(host, key, "http") as client:
        svc = await call(client, "deploy_service", {"name": "web", "image": platform_hello_image, "port": 8000})
        assert svc["status"] == "running", svc

        async def streaming() -> None:
            script = f"echo tick-1; while [ ! -e {gate} ]; do sleep 0.1; done; echo tick-2"
            args = {"service": "web", "command": script, "timeout_s": 120}
            result["run"] = await call(client, "exec", args, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(streaming)
            with anyio.fail_after(60):
                await first_line.wait()
            assert (await call(client, "exec", {"service": "web", "command": ["touch", gate]}))["exit_code"] == 0
        run = result["run"]
        assert run["exit_code"] == 0 and body(run["stdout"]) == "tick-1\ntick-2\n", run
        assert all(m.startswith("<<<UNTRUSTED WORKLOAD OUTPUT") for m in messages), messages
        await call(client, "delete_service", {"service": "web", "confirm": True})
