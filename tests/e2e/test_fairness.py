"""One tenant cannot starve the others: per-tenant caps answer `busy` at once, across MCP and REST."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import docker
import httpx
import pytest

from .harness import TEST_IMAGES_ENV, AgentHost, ToolFailed, call, connect

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

EXEC_CAP = 3

# Counts the execs that have begun (/tmp/started-*) and, on GET /go, lets them all finish.
GATE_APP = textwrap.dedent(
    """
    import glob, http.server
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/go":
                open("/tmp/go", "w").close()
            body = str(len(glob.glob("/tmp/started-*"))).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, fmt, *args):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
)


def _held(i: int) -> str:
    return f"touch /tmp/started-{i}; while [ ! -f /tmp/go ]; do sleep 0.05; done; echo released-{i}"


@pytest.fixture(scope="module")
def capped_host(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("fairness")))
    host.env = {"AGENTHOST_TENANT_MAX_CONCURRENT_EXECS": str(EXEC_CAP), **TEST_IMAGES_ENV}
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()


async def _started(http: httpx.AsyncClient, url: str, count: int) -> None:
    with anyio.fail_after(60):
        while (await http.get(url)).text != str(count):
            await anyio.sleep(0.1)


async def test_attack_execs_beyond_the_cap_are_busy_and_others_still_answer(
    capped_host: AgentHost, hello_image: str
) -> None:
    greedy, neighbour = capped_host.tenant("greedy"), capped_host.tenant("neighbour")
    async with (
        connect(capped_host, greedy, "http") as a,
        connect(capped_host, neighbour, "http") as b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        gate = await call(
            a,
            "deploy_service",
            {"name": "gate", "image": hello_image, "port": 8000, "command": ["python3", "-c", GATE_APP]},
        )
        assert gate["status"] == "running", gate
        app = await call(b, "deploy_service", {"name": "app", "image": hello_image, "port": 8000})
        assert app["status"] == "running", app

        finished: dict[int, dict] = {}

        async def hold(i: int) -> None:
            finished[i] = await call(a, "exec", {"service": "gate", "command": _held(i), "timeout_s": 300})

        async with anyio.create_task_group() as tg:
            for i in range(EXEC_CAP):
                tg.start_soon(hold, i)
            await _started(http, gate["internal_url"], EXEC_CAP)

            # One more exec, even a trivial one, is refused at once over MCP...
            with pytest.raises(ToolFailed) as err:
                await call(a, "exec", {"service": "gate", "command": ["true"]})
            assert err.value.code == "busy", err.value
            assert f"{EXEC_CAP} execs" in err.value.message and "retry" in err.value.message
            # ...and over REST to the same server: the cap is the tenant's, whatever the transport.
            rest = await http.post(
                f"{capped_host.url}/v1/tools/exec",
                json={"service": "gate", "command": ["true"]},
                headers={"Authorization": f"Bearer {greedy}"},
            )
            assert rest.status_code == 429, rest.text
            error = rest.json()["error"]
            assert error["code"] == "busy" and error["retry_after_s"] > 0, error
            assert rest.headers["retry-after"] == str(math.ceil(error["retry_after_s"]))

            # Another tenant's calls answer while every one of the greedy tenant's execs is still running.
            out = await call(b, "exec", {"service": "app", "command": ["echo", "neighbour"]})
            assert out["exit_code"] == 0 and "neighbour" in out["stdout"]
            assert (await call(b, "get_service", {"service": "app"}))["status"] == "running"
            assert [s["name"] for s in (await call(b, "list_services"))["services"]] == ["app"]
            assert finished == {}  # nothing of the greedy tenant's ended meanwhile

            await http.get(f"{gate['internal_url']}/go")

        assert sorted(finished) == list(range(EXEC_CAP))
        for i, result in finished.items():
            assert result["exit_code"] == 0 and f"released-{i}" in result["stdout"], result
        # The slots were given back with the execs.
        again = await call(a, "exec", {"service": "gate", "command": ["true"]})
        assert again["exit_code"] == 0
