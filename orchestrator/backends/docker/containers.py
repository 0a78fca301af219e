"""How workloads map onto Docker containers: finding a workload's container, creating and starting it
from its spec (isolation, limits, networks), and reading its status back.

Synchronous: the DockerBackend calls these from its engine's worker threads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from ...errors import InvalidInput
from ...labels import L_HASH, L_ID, L_KIND, L_TENANT, SLOTS, container_name, slot_id, tenant_bridge_name
from ..base import Endpoint, WorkloadSpec, WorkloadStatus
from .engine import DockerEngine
from .net import NetworkGone, attached_policy, network_gone

__all__ = [
    "container_status",
    "find_container",
    "guard_sync",
    "host_config",
    "list_containers",
    "listed_id",
    "parse_ts",
    "run_container_sync",
]


def find_container(engine: DockerEngine, workload_id: str) -> Container | None:
    found = engine.container(container_name(workload_id))
    if found is not None:
        return found
    # Not under our naming convention (created by hand or by an older version): find it by its labels, but
    # never take an update's second container (same label, slot name) for the workload's own.
    listed = list_containers(engine, {L_ID: workload_id})
    slots = {f"{container_name(slot_id(workload_id, slot))}" for slot in SLOTS}
    listed = [c for c in listed if c.name not in slots]
    return listed[0] if listed else None


def list_containers(engine: DockerEngine, labels: dict[str, str]) -> list[Container]:
    """This platform's containers with these labels, stopped ones too. One removed between the listing and its
    inspect (a failed create's cleanup, a delete) is left out, not an error."""
    return list(engine.client().containers.list(all=True, filters=engine.filters(labels), ignore_removed=True))


def listed_id(container: Container) -> str:
    """The workload id a container is listed under: its label's, or a slot id for an update's second one."""
    labelled = (container.labels or {}).get(L_ID, container.name)
    for slot in SLOTS:
        if container.name == container_name(slot_id(labelled, slot)):
            return slot_id(labelled, slot)
    return str(labelled)


def _key(spec: WorkloadSpec) -> str:
    return slot_id(spec.id, spec.slot) if spec.slot else spec.id


def guard_sync(engine: DockerEngine, container: Container) -> None:
    """Before an existing container starts again (e.g. after a reboot): the host's rules first."""
    policy = attached_policy(container.attrs)
    if policy is not None:
        engine.egress.ensure(policy)


def _create_sync(engine: DockerEngine, spec: WorkloadSpec, publish_host: str) -> Container:
    client = engine.client()
    labels = {
        **spec.labels,
        **engine.own,
        L_ID: spec.id,
        L_TENANT: spec.tenant_id,
        L_KIND: spec.kind,
        L_HASH: spec.spec_hash(),
    }
    networks: list[tuple[str, list[str]]] = []
    network_mode: str | None = None
    if spec.egress == "none" and not spec.ports and not spec.network:
        network_mode = "none"
    else:
        networks.append((engine.ensure_egress_sync(spec.egress), []))
        if spec.network:
            engine.ensure_network_sync(
                spec.network, {L_TENANT: spec.tenant_id}, internal=True, bridge=tenant_bridge_name(spec.network)
            )
            networks.append((spec.network, spec.network_aliases))
    config = host_config(spec)
    if network_mode:
        config["network_mode"] = network_mode
    else:
        config["network"] = networks[0][0]
        config["ports"] = {f"{p}/tcp": (publish_host, None) for p in spec.ports}
    container = client.containers.create(
        spec.image,
        command=spec.command,
        entrypoint=spec.entrypoint,
        name=container_name(_key(spec)),
        hostname=spec.network_aliases[0] if spec.network_aliases else None,
        environment=spec.env,
        labels=labels,
        user=spec.user,
        working_dir=spec.workdir,
        **config,
    )
    try:
        for net, aliases in networks[1:]:
            client.networks.get(net).connect(container, aliases=aliases or None)
    except BaseException:
        container.remove(force=True)
        raise
    return container


def run_container_sync(engine: DockerEngine, spec: WorkloadSpec, publish_host: str) -> Container:
    """Create (unless an up-to-date one exists) and start the container. Raises: NetworkGone."""
    container = find_container(engine, _key(spec))
    if container is not None and (container.labels or {}).get(L_HASH) != spec.spec_hash():
        container.remove(force=True)
        container = None
    if container is None:
        try:
            container = _create_sync(engine, spec, publish_host)
        except docker.errors.NotFound as exc:
            if network_gone(exc):
                raise NetworkGone(exc) from exc
            raise
    container.reload()
    if container.status not in ("running", "restarting"):
        guard_sync(engine, container)
        try:
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            if network_gone(exc):
                raise NetworkGone(exc) from exc
            # The engine refused to start what it accepted to create: the image, command or user
            # cannot run as given. That is the caller's to fix, not a platform fault.
            raise InvalidInput(
                f"the container cannot start: {exc.explanation}",
                "check the image's command, the command argument and the user",
            ) from exc
    return container


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
