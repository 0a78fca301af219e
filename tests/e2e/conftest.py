"""Fixtures for tests that drive agenthost against the real Docker daemon."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from orchestrator.backends.base import Backend
from orchestrator.settings import Settings

from .harness import AgentHost
from .nomad_agent import NOMAD_ADDR, backend_of, purge_tenants, start_dev_agent, stop_dev_agent

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
# What the session's platforms (Docker and Nomad alike) allow beyond the defaults: the conformance
# suite builds from local git repositories.
CONFORMANCE_ENV = {"AGENTHOST_ALLOW_LOCAL_GIT": "true"}
# Nomad reserves the CPU a workload asks for (Docker only caps it), and the dev node has two cores:
# smaller default shares so that a test's services, databases and the warm pool fit on it together.
NOMAD_DEV_SIZES = {
    "AGENTHOST_DEFAULT_CPUS": "0.25",
    "AGENTHOST_SANDBOX_CPUS": "0.25",
    "AGENTHOST_SANDBOX_POOL_SIZE": "1",
    "AGENTHOST_SSH_CPUS": "0.25",
}


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


@pytest.fixture(params=["docker", "nomad"])
def host(request: pytest.FixtureRequest) -> AgentHost:
    """The conformance suite's platform: each test runs once on Docker and once on Nomad."""
    fixture = "agenthost" if request.param == "docker" else "nomad_agenthost"
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
