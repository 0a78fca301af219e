"""Fixtures for tests that drive agenthost against the real Docker daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from orchestrator.backends.base import Backend
from orchestrator.settings import Settings

from .diagnostics import cluster_sections, server_sections
from .harness import TEST_IMAGES, TEST_IMAGES_ENV, AgentHost, TestHost, wait_for
from .nomad_agent import NOMAD_ADDR, NOMAD_DEV_SIZES, backend_of, purge_tenants, start_dev_agent, stop_dev_agent
from .nomad_cluster import Cluster, cannot_run, cluster_env, purge_jobs, push_images, start_cluster, stop_cluster

HELLO_APP = textwrap.dedent(
    """
    import os, http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello {os.environ.get('GREETING', 'world')}".encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, fmt, *args):
            print("request", self.path, flush=True)
    print("hello app starting", flush=True)
    http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H).serve_forever()
    """
)
HELLO_IMAGE = "ah-test/hello:1"
# What the session's platforms (Docker and the Nomad dev agent alike) allow beyond the defaults: the
# conformance suite builds from local git repositories, and tenants run the test images (ah-test/*).
CONFORMANCE_ENV = {"AGENTHOST_ALLOW_LOCAL_GIT": "true", **TEST_IMAGES_ENV}


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker is not reachable ({exc}); run `bash infra/setup.sh` first")
    yield client
    client.close()


@pytest.fixture(scope="session")
def platform_images(docker_client: docker.DockerClient) -> Settings:
    settings = Settings()
    for tag in (settings.image_base, settings.image_python):
        try:
            docker_client.images.get(tag)
        except docker.errors.ImageNotFound:
            pytest.skip(f"image {tag} missing; run `agenthost images build`")
    return settings


@pytest.fixture(scope="session")
def hello_image(
    docker_client: docker.DockerClient, platform_images: Settings, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A small HTTP service built locally (no registry is reachable here) on the platform's python image."""
    ctx = tmp_path_factory.mktemp("hello")
    (ctx / "app.py").write_text(HELLO_APP)
    (ctx / "Dockerfile").write_text(
        f'FROM {platform_images.image_python}\nCOPY app.py /app/app.py\nCMD ["python3", "/app/app.py"]\n'
    )
    docker_client.images.build(path=str(ctx), tag=HELLO_IMAGE, rm=True, pull=False)
    return HELLO_IMAGE


@pytest.fixture(scope="session")
def agenthost(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("agenthost-data")), env=dict(CONFORMANCE_ENV))
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()


@pytest.fixture(scope="session")
def lone_agenthost(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    """A platform on Docker whose data dir only its own `agenthost serve` opens. On ``agenthost``'s, the stdio
    processes of other tests fill the warm pool too, and the exec a process prepares in a pooled container ends
    with that process: a sandbox claimed there may have none waiting (docs/performance.md, "The first exec
    prepared while the sandbox is warm")."""
    host = AgentHost(data_dir=Path(tmp_path_factory.mktemp("agenthost-lone")), env=dict(CONFORMANCE_ENV))
    host.init()
    yield host
    host.stop()
    host.cleanup_engine()


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def nomad_agent() -> Iterator[str]:
    """The Nomad dev agent (infra/nomad.sh): reused when it runs (infra/test.sh starts it), else started here."""
    try:
        started = start_dev_agent()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield NOMAD_ADDR
    if started:
        stop_dev_agent()


@pytest.fixture(scope="session")
def nomad_agenthost(
    nomad_agent: str, docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentHost]:
    """agenthost on the Nomad backend, with its own data dir."""
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-nomad")),
        env={**CONFORMANCE_ENV, **NOMAD_DEV_SIZES, "AGENTHOST_BACKEND": "nomad", "AGENTHOST_NOMAD_ADDR": nomad_agent},
    )
    host.init()
    yield host
    host.stop()
    purge_tenants(host)


@pytest.fixture(scope="session")
def nomad_cluster(platform_images: Settings) -> Iterator[Cluster]:
    """The three-node cluster (infra/nomad-testcluster.sh): reused when it runs (infra/test.sh starts it), else
    started here; the platform's images pushed to its registry (the nodes pull them by digest)."""
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    s = platform_images
    try:
        started = start_cluster()
        images = push_images([s.image_python, s.image_base, s.image_postgres, s.image_redis])
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield cluster_env(images)
    if started:
        stop_cluster()


@pytest.fixture(scope="session")
def cluster_agenthost(nomad_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHost]:
    """agenthost on the Nomad backend against the cluster: its images by digest from the cluster registry, whose
    login only the builder (DOCKER_CONFIG) and the nodes hold. What the conformance suite needs besides: builds
    from local git, the test images (also as pushed to the cluster registry) and one warm sandbox (the pool warms
    only once a sandbox is asked for)."""
    test_images = [*TEST_IMAGES, *(f"{nomad_cluster.registry}/{pattern}" for pattern in TEST_IMAGES)]
    host = AgentHost(
        data_dir=Path(tmp_path_factory.mktemp("agenthost-cluster")),
        env={
            **nomad_cluster.platform_env(),
            "AGENTHOST_ALLOW_LOCAL_GIT": "true",
            "AGENTHOST_IMAGE_ALLOW": json.dumps(test_images),
            "AGENTHOST_SANDBOX_POOL_SIZE": "1",
        },
        cluster=nomad_cluster,
    )
    host.init()
    yield host
    host.stop()
    purge_jobs(nomad_cluster, host.instance, set(host.tenant_ids.values()))


@pytest.fixture(scope="session")
def cluster_hello_image(nomad_cluster: Cluster, hello_image: str) -> str:
    """The hello image pushed to the cluster registry: its reference by digest, which the nodes pull."""
    try:
        return push_images([hello_image])[hello_image]
    except RuntimeError as exc:
        pytest.fail(str(exc))


PLATFORMS = {"docker": "agenthost", "nomad": "nomad_agenthost", "cluster": "cluster_agenthost"}
# The conformance suite runs on Docker and on the three-node cluster. The cluster leg runs every path the
# dev agent's would (the same backend, with ACLs, TLS and two nodes on top), so the dev agent takes only the
# tests that mark it (``ALL_PLATFORMS``): what differs there is its plain local registry and one node.
SUITE_PLATFORMS = ["docker", "cluster"]
ALL_PLATFORMS = pytest.mark.parametrize("host", list(PLATFORMS), indirect=True)


# infra/test.sh runs the suite in two pytest processes at once, since it spends much of its time waiting on
# the engines. The second run takes every test on Nomad (the dev agent or the three-node cluster), whatever its
# module, so that those keep their order and no two of them share a Nomad at once; and these Docker modules,
# which even out the two runs' lengths (about 19 and 34 minutes without them, on two cores).
_NOMAD_FIXTURES = {"nomad_agent", "nomad_agenthost", "nomad_cluster", "cluster_agenthost"}
_SECOND_RUN_MODULES = {
    "test_ingress.py",
    "test_mcp_surface.py",
    "test_postgres_image.py",
    "test_reconciler.py",
    "test_sandboxes.py",
    "test_services.py",
    "test_ssh.py",
    "test_volumes.py",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        platform = PLATFORMS.get(callspec.params.get("host", "")) if callspec is not None else None
        on_nomad = _NOMAD_FIXTURES & {*getattr(item, "fixturenames", ()), *([platform] if platform else [])}
        if on_nomad or item.path.name in _SECOND_RUN_MODULES:
            item.add_marker(pytest.mark.second_run)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test's report ends with what the run will have removed by the time anyone reads it: its servers'
    logs and, when it ran on the test cluster, the Nomad agents' warnings and errors (tests/e2e/diagnostics.py)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    hosts = list({id(v): v for v in funcargs.values() if isinstance(v, AgentHost)}.values())
    report.sections.extend(server_sections(hosts))
    if any(isinstance(v, Cluster) for v in funcargs.values()) or any(h.cluster is not None for h in hosts):
        report.sections.extend(cluster_sections())


@pytest.fixture(params=SUITE_PLATFORMS)
def host(request: pytest.FixtureRequest) -> AgentHost:
    """The conformance suite's platform: each test runs on Docker and on the three-node cluster; with
    ``ALL_PLATFORMS`` on the Nomad dev agent too. A module that is not part of the suite narrows it with
    ``pytest.mark.parametrize("host", [...], indirect=True)``."""
    return request.getfixturevalue(PLATFORMS[request.param])  # type: ignore[no-any-return]


@pytest.fixture
def platform_hello_image(host: AgentHost, request: pytest.FixtureRequest) -> str:
    """``hello_image`` as the test's platform runs it: the local tag, or on the cluster its reference by digest
    in the cluster registry."""
    fixture = "cluster_hello_image" if host.platform == "cluster" else "hello_image"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


@pytest.fixture
async def product_backend(host: AgentHost) -> AsyncIterator[Backend]:
    """The server's own backend (same instance), to look into workloads the tools made."""
    b = backend_of(host)
    yield b
    await b.close()


@pytest.fixture
async def backend(host: AgentHost) -> AsyncIterator[Backend]:
    """A backend of its own instance, for protocol-level tests (the server would remove their workloads)."""
    b = backend_of(host, f"conformance-{uuid.uuid4().hex[:8]}")
    yield b
    await b.close()


# The test host: a network namespace of our own behind a veth pair, standing in for everything a
# workload must never reach (cloud metadata, the LAN, CGNAT) and, at a TEST-NET-3 address, for the
# internet a workload with egress may reach. Nothing leaves this machine. None of these addresses is in
# agenthost's own tenant pool (10.213.0.0/16).
TEST_HOST_NS, TEST_HOST_IF, TEST_HOST_PEER = "ah-test-lan", "tlan-host", "tlan-ns"
TEST_HOST_LINK = ("10.77.0.1", "10.77.0.2")  # host side, namespace side (/24)
TEST_HOST_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ip, port = self.connection.getsockname()[:2]
        body = f"agenthost-test-host {ip}:{port}\\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _remove_test_host() -> None:
    subprocess.run(["ip", "link", "del", TEST_HOST_IF], capture_output=True)  # its routes go with it
    subprocess.run(["ip", "netns", "del", TEST_HOST_NS], capture_output=True)


@pytest.fixture(scope="session")
def test_host() -> Iterator[TestHost]:
    """The test host, proved reachable from the host itself (so a refusal later is the rules' doing),
    and removed at the end (servers, routes, veth, namespace), also when the setup failed half-way."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 is not installed (apt-get install iproute2)")
    host = TestHost(
        internet="203.0.113.7",
        forbidden={
            "metadata": "169.254.169.254",
            "rfc1918-10": TEST_HOST_LINK[1],
            "rfc1918-192": "192.168.77.2",
            "cgnat": "100.64.77.2",
        },
    )
    _remove_test_host()  # what a killed earlier run left
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _ip("netns", "add", TEST_HOST_NS)
        _ip("link", "add", TEST_HOST_IF, "type", "veth", "peer", "name", TEST_HOST_PEER)
        _ip("link", "set", TEST_HOST_PEER, "netns", TEST_HOST_NS)
        _ip("addr", "add", f"{TEST_HOST_LINK[0]}/24", "dev", TEST_HOST_IF)
        _ip("link", "set", TEST_HOST_IF, "up")
        inside = ["netns", "exec", TEST_HOST_NS, "ip"]
        _ip(*inside, "addr", "add", f"{TEST_HOST_LINK[1]}/24", "dev", TEST_HOST_PEER)
        for address in [host.internet, *host.forbidden.values()]:
            if address != TEST_HOST_LINK[1]:
                _ip(*inside, "addr", "add", f"{address}/32", "dev", TEST_HOST_PEER)
                _ip("route", "add", f"{address}/32", "via", TEST_HOST_LINK[1], "dev", TEST_HOST_IF)
        _ip(*inside, "link", "set", TEST_HOST_PEER, "up")
        _ip(*inside, "link", "set", "lo", "up")
        _ip(*inside, "route", "add", "default", "via", TEST_HOST_LINK[0])
        servers += [
            subprocess.Popen(
                ["ip", "netns", "exec", TEST_HOST_NS, "python3", "-c", TEST_HOST_SERVER, str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
            )
            for port in host.ports
        ]
        for address in [host.internet, *host.forbidden.values()]:
            for port in host.ports:
                url, want = f"http://{address}:{port}/", f"agenthost-test-host {address}:{port}"

                def answers(url: str = url, want: str = want) -> bool:
                    try:
                        return httpx.get(url, timeout=3).text.strip() == want
                    except httpx.HTTPError:
                        return False

                wait_for(answers, 20, what=f"the test host to answer at {url} from the host")
        yield host
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)
        _remove_test_host()
