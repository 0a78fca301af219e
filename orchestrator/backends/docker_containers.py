"""How workloads map onto Docker containers: names, the create arguments of a spec, a container's status.

Pure translation (and one events query): the DockerBackend calls these from its worker threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from ..errors import AgentHostError, BackendUnavailable, Conflict, ImageNotFound, InvalidInput, NotFound
from .base import LABEL_PREFIX, Endpoint, WorkloadSpec, WorkloadStatus

__all__ = [
    "L_HASH",
    "L_ID",
    "L_INSTANCE",
    "L_KIND",
    "L_MANAGED",
    "L_TENANT",
    "container_name",
    "container_status",
    "docker_errors",
    "host_config",
    "parse_ts",
]

L_MANAGED = f"{LABEL_PREFIX}.managed"
L_INSTANCE = f"{LABEL_PREFIX}.instance"
L_ID = f"{LABEL_PREFIX}.id"
L_TENANT = f"{LABEL_PREFIX}.tenant"
L_KIND = f"{LABEL_PREFIX}.kind"
L_HASH = f"{LABEL_PREFIX}.spec-hash"


def container_name(workload_id: str) -> str:
    return f"ah-{workload_id}"


@contextmanager
def docker_errors(what: str) -> Iterator[None]:
    """Translate docker-py and transport failures into the agenthost error tree."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ImageNotFound(f"{what}: image not found ({exc.explanation})") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(f"{what}: {exc.explanation}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code == 409:
            raise Conflict(f"{what}: {exc.explanation}") from exc
        if exc.status_code == 400:
            raise InvalidInput(f"{what}: {exc.explanation}") from exc
        raise AgentHostError(f"{what}: docker engine error: {exc.explanation}") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise BackendUnavailable(f"{what}: docker engine unreachable ({exc})") from exc


def parse_ts(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    # Docker gives nanoseconds; Python keeps microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def host_config(spec: WorkloadSpec) -> dict[str, Any]:
    """The isolation and limits of a spec as ``containers.create`` arguments (networking aside)."""
    return {
        "runtime": spec.runtime,
        "init": spec.init,
        "read_only": spec.read_only_rootfs,
        "tmpfs": {path: f"rw,nosuid,nodev,size={mb}m" for path, mb in spec.tmpfs.items()},
        "cap_drop": ["ALL"],
        "cap_add": spec.cap_add or None,
        "security_opt": ["no-new-privileges"],
        "mem_limit": f"{spec.memory_mb}m",
        "memswap_limit": f"{spec.memory_mb}m",
        "nano_cpus": int(spec.cpus * 1e9),
        "pids_limit": spec.pids_limit,
        "mounts": [
            docker.types.Mount(target=v.path, source=v.name, type="volume", read_only=v.read_only) for v in spec.volumes
        ],
        "log_config": docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
        "restart_policy": (
            {"Name": "on-failure", "MaximumRetryCount": spec.max_restarts}
            if spec.restart == "on-failure"
            else {"Name": "no"}
        ),
    }


def container_status(
    client: docker.DockerClient, workload_id: str, container: Container | None, publish_host: str
) -> WorkloadStatus:
    if container is None:
        return WorkloadStatus(id=workload_id, state="missing")
    attrs = container.attrs
    st = attrs.get("State", {})
    raw = st.get("Status", "created")
    state = {"running": "running", "restarting": "restarting", "exited": "exited", "dead": "exited"}.get(raw, "pending")
    if raw == "running" and st.get("Restarting"):
        state = "restarting"
    endpoints: dict[int, Endpoint] = {}
    for key, binds in (attrs.get("NetworkSettings", {}).get("Ports") or {}).items():
        if binds:
            endpoints[int(key.split("/")[0])] = Endpoint(host=publish_host, port=int(binds[0]["HostPort"]))
    labels = attrs.get("Config", {}).get("Labels") or {}
    restarts = int(attrs.get("RestartCount", 0))
    exit_code = st.get("ExitCode") if state in ("exited", "restarting") else None
    if exit_code is None and restarts:
        exit_code = _last_exit_code(client, container)
    return WorkloadStatus(
        id=workload_id,
        state=state,
        endpoints=endpoints,
        restarts=restarts,
        exit_code=exit_code,
        error=st.get("Error") or None,
        oom_killed=bool(st.get("OOMKilled")),
        started_at=parse_ts(st.get("StartedAt")),
        finished_at=parse_ts(st.get("FinishedAt")),
        spec_hash=labels.get(L_HASH),
        labels=labels,
    )


def _last_exit_code(client: docker.DockerClient, container: Container) -> int | None:
    """Once a restarted container runs again the engine zeroes State.ExitCode; its 'die' events keep it."""
    created = parse_ts(container.attrs.get("Created"))
    events = client.api.events(
        since=int(created.timestamp()) if created else None,
        until=int(datetime.now(UTC).timestamp()) + 1,
        filters={"container": container.id, "event": "die"},
        decode=True,
    )
    codes = [e.get("Actor", {}).get("Attributes", {}).get("exitCode") for e in events]
    return int(codes[-1]) if codes and codes[-1] is not None else None
