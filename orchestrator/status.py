"""What the platform tells its callers about itself: the engine and its runtimes, disk, counts, open circuit
breakers (``platform_status``), a tenant's usage as its quotas count it (``whoami``), and the disk watermark
that refuses new work."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from .backends.base import Backend, BackendInfo, NodeInfo
from .backends.building import Builder
from .builds.logs import LogFiles, logs_size
from .errors import AgentHostError, BackendUnavailable
from .models import Principal, Usage
from .quotas import workloads
from .services import engine_volumes, volumes_held
from .settings import Settings
from .store import Store, TenantStore, all_database_records, all_service_records
from .usage import HeldFigures, UsageCache

__all__ = ["ClusterSummary", "PlatformStatus", "Status", "egress_notes"]


class ClusterSummary(BaseModel):
    """The engine's nodes at a glance (one node on Docker; the Nomad cluster's client nodes on Nomad)."""

    leader: str | None = Field(None, description="the Nomad server leading the cluster")
    region: str | None = None
    nodes: int = 0
    nodes_ready: int = 0
    nodes_eligible: int = Field(0, description="ready nodes that accept new work")
    drivers: list[str] = []
    runtimes: list[str] = Field(default_factory=list, description="runtimes offered by at least one eligible node")


class PlatformStatus(BaseModel):
    backend: str
    reachable: bool
    error: str | None = None
    engine_version: str | None = None
    runtimes: list[str] = []
    default_runtime: str
    notes: list[str] = Field(default_factory=list, description="missing features and why (e.g. sysbox absent)")
    disk_used_percent: float | None = None
    disk_state: Literal["ok", "warn", "refuse"] = "ok"
    counts: dict[str, int] = {}
    open_circuit_breakers: list[str] = []
    read_only: bool = False
    cluster: ClusterSummary | None = None
    reconcile_passes: int | None = Field(
        None,
        description="admins only: reconciler passes finished by this server process since it started (0 in a"
        " process that does not reconcile)",
    )


@dataclass(frozen=True)
class _EngineFacts:
    info: BackendInfo
    runtimes: set[str]
    nodes: list[NodeInfo]
    build_notes: list[str]
    at: float


class Status:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        backend: Backend,
        builder: Builder,
        log_files: LogFiles,
        reconcile_passes: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.builder = builder
        self.log_files = log_files
        self.reconcile_passes = reconcile_passes
        self._clock = clock
        self._facts: _EngineFacts | None = None
        self._facts_lock = anyio.Lock()
        self._held = UsageCache(settings.usage_cache_ttl_s, clock)

    def forget_engine_facts(self) -> None:
        """The next platform_status asks the engine again (a call has just found it unavailable, or changed a
        node)."""
        self._facts = None

    def _fresh(self) -> _EngineFacts | None:
        facts = self._facts
        if facts is not None and self._clock() - facts.at < self.settings.engine_facts_ttl_s:
            return facts
        return None

    async def _engine_facts(self) -> _EngineFacts:
        """The engine's version, runtimes, nodes and build isolation, asked at most once per
        ``engine_facts_ttl_s`` however many callers ask at once (four round trips, the slowest of which,
        Docker's /info, takes tens of milliseconds). A failure is never kept.

        Raises: BackendUnavailable."""
        if (facts := self._fresh()) is not None:
            return facts
        async with self._facts_lock:
            if (facts := self._fresh()) is not None:
                return facts  # another caller asked while this one waited
            info = await self.backend.info()
            runtimes = await self.backend.runtimes()
            nodes = await self.backend.nodes()
            try:
                build_notes = [f"builds: {note}" for note in (await self.builder.build_isolation()).notes]
            except AgentHostError as exc:
                build_notes = [f"builds: the builder's engine did not answer ({exc.message})"]
            self._facts = _EngineFacts(info, runtimes, nodes, build_notes, self._clock())
            return self._facts

    def forget_usage(self, tenant_id: str) -> None:
        """The tenant's next usage counts its volumes and build logs again (a call of its may have changed
        them)."""
        self._held.forget(tenant_id)

    async def _held_figures(self, ts: TenantStore) -> HeldFigures:
        try:
            volumes: int | None = len(await volumes_held(ts, await engine_volumes(self.backend, ts.tenant_id)))
        except BackendUnavailable:
            volumes = None  # whoami still answers while the engine is away
        log_bytes = await anyio.to_thread.run_sync(logs_size, self.log_files.folder(ts.tenant_id))
        return HeldFigures(volumes, log_bytes)

    async def usage(self, p: Principal) -> Usage:
        """What the tenant holds, counted as its quotas are checked; its volumes and build log bytes as kept by
        the usage cache (orchestrator/usage.py)."""
        ts = self.store.scoped(p.tenant_id)
        held = await workloads(ts)
        backups, backup_bytes = await ts.backups.totals()
        figures = await self._held.figures(p.tenant_id, lambda: self._held_figures(ts))
        return Usage(
            services=held.services,
            memory_mb=held.memory_mb,
            cpus=held.cpus,
            databases=held.databases,
            sandboxes=held.sandboxes,
            volumes=figures.volumes,
            backups=backups,
            backup_bytes=backup_bytes,
            build_log_bytes=figures.build_log_bytes,
        )

    def disk_state(self, path: Path) -> tuple[float | None, str]:
        try:
            du = shutil.disk_usage(path)
        except OSError:
            return None, "ok"
        pct = round(100.0 * du.used / du.total, 1)
        state = (
            "refuse"
            if pct >= self.settings.disk_refuse_percent
            else "warn"
            if pct >= self.settings.disk_warn_percent
            else "ok"
        )
        return pct, state

    async def check_disk(self) -> None:
        """Raises: AgentHostError when the disk is past the refuse watermark."""
        pct, state = self.disk_state(self.settings.data_dir)
        if state == "refuse":
            raise AgentHostError(
                f"disk is {pct}% full; new work is refused above {self.settings.disk_refuse_percent}%",
                "an operator must free disk space",
            )

    async def report(self, p: Principal) -> PlatformStatus:
        """Engine facts for everyone; counts and breakers of the caller's tenant (of all tenants for admins)."""
        if p.is_admin:
            records = await all_service_records(self.store.db)
            counts = {"tenants": await self.store.tenants.count()}
            names = {t.id: t.name for t in await self.store.tenants.all()}
            counts["databases"] = len(await all_database_records(self.store.db))
        else:
            records = await self.store.scoped(p.tenant_id).services.all()
            counts, names = {}, {p.tenant_id: p.tenant_name}
            counts["databases"] = len(await self.store.scoped(p.tenant_id).databases.all())
        counts["services"] = len(records)
        for rec in records:
            counts[f"services_{rec.status}"] = counts.get(f"services_{rec.status}", 0) + 1
        breakers = [f"{names.get(rec.tenant_id, rec.tenant_id)}/{rec.name}" for rec in records if rec.breaker_open]
        base = PlatformStatus(
            backend=self.backend.name,
            reachable=False,
            default_runtime=self.settings.default_runtime,
            counts=counts,
            open_circuit_breakers=breakers,
            read_only=self.settings.read_only,
            reconcile_passes=self.reconcile_passes() if p.is_admin else None,
        )
        try:
            facts = await self._engine_facts()
        except BackendUnavailable as exc:
            base.error = exc.message
            base.notes.append("mutating tools fail with backend_unavailable until the engine is back")
            return base
        info, runtimes, nodes = facts.info, facts.runtimes, facts.nodes
        notes = []
        if "sysbox-runc" not in runtimes:
            notes.append("sysbox-runc is not installed: runtime='sysbox' (Docker-in-Docker) is refused")
        if self.settings.default_runtime not in runtimes:
            notes.append(f"the default runtime {self.settings.default_runtime} is missing: deploys will be refused")
        if not self.settings.allow_runc:
            notes.append("runc is disabled by the operator (allow_runc=false)")
        notes += egress_notes(info.details)
        if info.details.get("egress_note"):
            notes.append(info.details["egress_note"])
        notes += facts.build_notes
        ready = [n for n in nodes if n.status == "ready"]
        cluster = ClusterSummary(
            leader=info.details.get("leader") or None,
            region=info.details.get("region") or None,
            nodes=len(nodes),
            nodes_ready=len(ready),
            nodes_eligible=sum(n.eligible for n in ready),
            drivers=sorted({d for n in ready for d in n.drivers}),
            runtimes=sorted(runtimes),
        )
        if not cluster.nodes_eligible:
            notes.append("no node accepts new work: deploys will fail until one is ready and eligible")
        pct, state = self.disk_state(info.data_root or self.settings.data_dir)
        return base.model_copy(
            update={
                "reachable": True,
                "engine_version": info.version,
                "runtimes": sorted(runtimes),
                "notes": notes,
                "disk_used_percent": pct,
                "disk_state": state,
                "cluster": cluster,
            }
        )


def egress_notes(details: dict[str, str]) -> list[str]:
    """What egress means on this platform's Docker host (the Nomad backend says it in egress_note)."""
    enforced = details.get("egress_enforced")
    if enforced == "true":
        allow = details.get("egress_allow")
        return [
            "egress reaches the internet only: never this host, link-local (cloud metadata), private (RFC 1918)"
            " or CGNAT ranges, nor another tenant" + (f"; the operator also allows {allow}" if allow else "")
        ]
    if enforced == "false" and details.get("egress_unfiltered_accepted") == "true":
        return [
            "iptables is missing and the operator accepted unfiltered egress: egress 'open' reaches this host,"
            " its LAN and cloud metadata; 'web' and 'none' are refused"
        ]
    if enforced == "false":
        return ["iptables is missing: workloads with a network (services, databases, egress sandboxes, builds) fail"]
    return []
