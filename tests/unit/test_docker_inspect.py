"""Container and exec inspects over the engine's unix socket (backends/docker/inspect.py), against a local stand-in
for the engine's API: the container, 'no such container', anything else, and a connection the engine dropped."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import docker.errors
import pytest

from orchestrator.backends.docker.containers import find_container, list_containers
from orchestrator.backends.docker.engine import DockerEngine, docker_errors
from orchestrator.backends.docker.inspect import SocketInspect, Unanswered
from orchestrator.errors import AgentHostError
from orchestrator.labels import L_ID

CONTAINER = {"Id": "abc", "Name": "/ah-svc_1", "State": {"Status": "running"}}
EXEC = {"ID": "e1", "Running": False, "ExitCode": 3, "Pid": 42}


class _Engine(socketserver.StreamRequestHandler):
    """Answers GET /v1.41/containers/<name>/json on a keep-alive connection, as dockerd does."""

    server: _Server

    def handle(self) -> None:
        self.server.connections += 1
        while line := self.rfile.readline():
            path = line.split()[1].decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            self.server.paths.append(path)
            name = path.removeprefix("/v1.41/containers/").removesuffix("/json")
            if name == "hangup":
                return
            if name.startswith("json?"):  # a listing that names a container removed before it is inspected
                name = "listing"
            status, body = {
                "/version": (200, b'{"ApiVersion":"1.41","Version":"test"}'),
                "ah-svc_1": (200, json.dumps(CONTAINER).encode()),
                "broken": (500, b'{"message":"boom"}'),
                "/v1.41/exec/e1": (200, json.dumps(EXEC).encode()),
                "listing": (200, json.dumps([{"Id": "removed0"}]).encode()),
            }.get(name, (404, b'{"message":"No such container"}'))
            self.wfile.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    connections = 0
    paths: list[str]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(str(tmp_path / "docker.sock"), _Engine)
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _inspect(engine: _Server) -> SocketInspect:
    return SocketInspect(str(engine.server_address), "1.41", timeout=5)


def test_the_container_then_none_for_a_missing_one_on_one_connection(engine: _Server) -> None:
    inspect = _inspect(engine)
    assert inspect.container("ah-svc_1") == CONTAINER
    assert inspect.container("ah-gone") is None
    assert inspect.container("ah-svc_1") == CONTAINER
    assert engine.connections == 1
    assert engine.paths == ["/v1.41/containers/ah-svc_1/json", "/v1.41/containers/ah-gone/json"] + [
        "/v1.41/containers/ah-svc_1/json"
    ]


def test_another_status_is_left_to_the_caller(engine: _Server) -> None:
    with pytest.raises(Unanswered, match="HTTP 500"):
        _inspect(engine).container("broken")


def test_a_name_is_one_path_segment(engine: _Server) -> None:
    assert _inspect(engine).container("../../info?x=1") is None
    assert engine.paths == ["/v1.41/containers/..%2F..%2Finfo%3Fx%3D1/json"]


def test_a_dropped_connection_fails_the_call_and_the_next_one_connects_again(engine: _Server) -> None:
    inspect = _inspect(engine)
    assert inspect.container("ah-svc_1") == CONTAINER
    with pytest.raises(ConnectionError):
        inspect.container("hangup")
    assert inspect.container("ah-svc_1") == CONTAINER
    assert engine.connections == 2


def test_no_engine_is_a_connection_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SocketInspect(str(tmp_path / "none.sock"), "1.41", timeout=5).container("ah-svc_1")


def test_inspects_at_once_each_take_a_connection_and_leave_it_for_the_next(engine: _Server) -> None:
    inspect = _inspect(engine)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(inspect.container, ["ah-svc_1"] * 40)) == [CONTAINER] * 40
    assert 1 <= engine.connections <= 4
    before = engine.connections
    assert inspect.container("ah-svc_1") == CONTAINER
    assert engine.connections == before


def test_close_closes_the_idle_connections(engine: _Server) -> None:
    inspect = _inspect(engine)
    assert inspect.container("ah-svc_1") == CONTAINER
    idle = list(inspect._idle)
    inspect.close()
    assert [conn.sock for conn in idle] == [None]


def test_the_engine_takes_the_container_from_the_socket_and_leaves_other_answers_to_docker_py(
    engine: _Server,
) -> None:
    docker_engine = DockerEngine(f"unix://{engine.server_address}")
    try:
        found = docker_engine.container("ah-svc_1")
        assert found is not None and found.attrs == CONTAINER and found.name == "ah-svc_1"
        assert docker_engine.container("ah-gone") is None
        asked = len(engine.paths)
        # A 500: the socket inspect leaves it to docker-py, which asks again and raises what the backend translates.
        with pytest.raises(AgentHostError, match="boom"), docker_errors("inspect broken"):
            docker_engine.container("broken")
        assert engine.paths[asked:] == ["/v1.41/containers/broken/json"] * 2
    finally:
        anyio.run(docker_engine.close)


def test_a_container_removed_between_the_listing_and_its_inspect_is_not_there(engine: _Server) -> None:
    # The reconciler removes a container it could not attach to its network while another call looks the workload
    # up by its label: that call sees no container (state "missing"), not an engine "No such container" error.
    docker_engine = DockerEngine(f"unix://{engine.server_address}")
    try:
        assert find_container(docker_engine, "svc_2") is None
        assert list_containers(docker_engine, {L_ID: "svc_2"}) == []
        assert "/v1.41/containers/removed0/json" in engine.paths
    finally:
        anyio.run(docker_engine.close)


def test_an_exec_s_inspects_take_the_socket_and_leave_404s_and_errors_to_docker_py(engine: _Server) -> None:
    docker_engine = DockerEngine(f"unix://{engine.server_address}")
    try:
        api = docker_engine.exec_api()
        asked = len(engine.paths)
        assert api.inspect_container("ah-svc_1") == CONTAINER
        assert api.exec_inspect("e1") == EXEC
        assert engine.paths[asked:] == ["/v1.41/containers/ah-svc_1/json", "/v1.41/exec/e1/json"]
        # What exec_sync tells apart: docker-py's NotFound for a gone exec or container, its APIError for the rest.
        with pytest.raises(docker.errors.NotFound):
            api.exec_inspect("gone")
        with pytest.raises(docker.errors.NotFound):
            api.inspect_container("ah-gone")
        with pytest.raises(docker.errors.APIError, match="boom"):
            api.inspect_container("broken")
        assert engine.paths[asked + 2 :] == [
            *["/v1.41/exec/gone/json"] * 2,
            *["/v1.41/containers/ah-gone/json"] * 2,
            *["/v1.41/containers/broken/json"] * 2,
        ]
        assert api.exec_create == docker_engine.client().api.exec_create  # everything else is docker-py's own
    finally:
        anyio.run(docker_engine.close)
