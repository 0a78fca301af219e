"""Builds from git: queue per tenant, build in isolation, push to the local registry, logs that outlive us.

A build is recorded (status ``queued``) before any work starts and runs in the process that
accepted it (``builds_run.execute``): it waits for a slot (the tenant's
``max_concurrent_builds`` and the host's ``build_max_concurrent``), fetches one commit
(``builds_git``), picks a recipe (``builds_recipes``), builds with the engine, and pushes the
image, tagged ``<registry>/<tenant>/<name>:<build>``, to the local registry so Nomad clients can
pull it. Its log is a file in the data dir (``builds_logs``). A process heartbeat marks the
builds it runs; on startup and every few seconds, builds whose process is gone (a crash, a
restart) are marked failed and their leftovers removed, so no build is ever stuck. Over stdio the
process is the MCP session, so ending the session ends (fails) its unfinished builds.

Isolation, and why it is this way:

- The build never sees the control plane: sources are checked out into a fresh directory under
  ``build_dir`` (a temp dir by default; one inside the data dir is refused), ``.git`` is dropped,
  and the context sent to the engine holds nothing but the repository. No env, secrets or
  volumes are given to a build. FROM references to another tenant's images are refused.
- git runs on the host, hardened (``builds_git``): no operator git config or credentials, no
  hooks, no redirects, only https (local transports when the operator allows them), checked
  addresses pinned, a size cap.
- RUN steps run in the engine's own build containers: unprivileged (default capabilities,
  seccomp and AppArmor), with a memory+swap limit (``build_memory_mb``), a CPU quota
  (``build_cpus``) and the build's time limit (``build_timeout_s``, cancel on expiry), on the
  network of the operator's ``build_network`` policy: the agenthost egress bridge of that policy
  (``open``, or ``web`` for ports 80/443 only), on which containers cannot reach each other nor
  the host itself (so neither the control plane nor the registry), or no network at all.
- RUN steps do **not** run under gVisor. Docker's build API cannot choose a runtime per build:
  step containers use the daemon's default runtime (runc here), and changing that default is an
  operator decision about every container on the host, which agenthost does not make behind
  their back (its own workloads always name their runtime, so they do not depend on it). An
  operator who wants RUN steps under gVisor sets ``"default-runtime": "runsc"`` in dockerd's
  daemon.json (not exercised by this project's tests). A builder that runs inside a runsc
  sandbox (BuildKit or buildah) would close this gap without touching the daemon; it needs a
  builder image this offline host cannot pull, so it is left for later.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.abc
from pydantic import BaseModel, Field

from .backends.base import Builder
from .builds_logs import read_log
from .builds_recipes import check_dockerfile_path
from .builds_run import Run, execute
from .builds_url import check_addresses, default_name, parse_git_url
from .errors import AgentHostError, BuildFailed, ImageNotFound, InvalidInput, QuotaExceeded
from .image_registry import in_registry, registry_of
from .models import Build, BuildLogOutput, BuildRecord, BuildSummary, Principal, ResourceName, untrusted
from .owners import on_this_host, owner_alive, owner_token
from .progress import Reporter
from .settings import Settings
from .store import Store, TenantStore, builds_with_leftovers, cancel_requested, touch_builds, unfinished_builds

__all__ = ["BuildManager", "BuildRequest"]

log = logging.getLogger(__name__)
_TICK_S = 1.0
_RECOVER_EVERY_S = 10.0
_STALE_S = 60.0
_LOG_TAIL_LINES = 30


class BuildRequest(BaseModel):
    git_url: str = Field(min_length=1, max_length=1024)
    ref: str | None = Field(None, max_length=200)
    name: ResourceName | None = None
    dockerfile: str | None = Field(None, max_length=256)
    timeout_s: float | None = Field(None, gt=0)
    wait: bool = True
    wait_timeout_s: float | None = Field(None, gt=0, le=600)


def _owner_alive(owner: str, heartbeat: datetime) -> bool:
    if on_this_host(owner):
        return owner_alive(owner)
    return (datetime.now(UTC) - heartbeat).total_seconds() < _STALE_S


class BuildManager:
    def __init__(
        self, settings: Settings, store: Store, builder: Builder, *, pulls_from_registry: bool = False
    ) -> None:
        """``pulls_from_registry``: workloads run on nodes that pull images (Nomad), not on the builder's engine."""
        self.settings = settings
        self.store = store
        self.builder = builder
        self.pulls_from_registry = pulls_from_registry
        self.owner = owner_token()
        self._runs: dict[str, Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()

    # -- places and names -----------------------------------------------------------------------

    def log_path(self, tenant_id: str, build_id: str) -> Path:
        return self.settings.data_dir / "build-logs" / tenant_id / f"{build_id}.log"

    def workdir(self, build_id: str) -> Path:
        root = self.settings.build_dir or Path(tempfile.gettempdir()) / "agenthost-builds"
        data = self.settings.data_dir.resolve()
        if root.resolve() == data or data in root.resolve().parents:
            raise AgentHostError("build_dir is inside the data dir", "set build_dir to a directory outside it")
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root / build_id

    def tag_for(self, rec: BuildRecord) -> str:
        prefix = self.settings.registry.strip().rstrip("/") or "ah-build"
        return f"{prefix}/{rec.tenant_id}/{rec.name}:{rec.id}"

    # -- the runner -----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host this process's builds; keep their heartbeat; fail the builds of processes that died."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._tick(recover=True)
            task_status.started()
            last_recover = time.monotonic()
            while True:
                await anyio.sleep(_TICK_S)
                due = time.monotonic() - last_recover > _RECOVER_EVERY_S
                last_recover = time.monotonic() if due else last_recover
                await self._tick(recover=due)

    async def _tick(self, recover: bool) -> None:
        try:
            mine = list(self._runs)
            if mine:
                await touch_builds(self.store.db, mine)
                for build_id in await cancel_requested(self.store.db, mine):
                    if build_id in self._runs:
                        self._runs[build_id].cancel()
            if recover:
                await self.recover()
        except AgentHostError as exc:  # the engine may be away: the next tick tries again
            log.warning("build runner: %s", exc)

    def forget(self, build_id: str) -> None:
        self._runs.pop(build_id, None)
        self._changed.set()
        self._changed = anyio.Event()

    async def changed_or(self, timeout_s: float) -> None:
        """Sleep until a build of this process finishes, or ``timeout_s`` (other processes' are polled)."""
        with anyio.move_on_after(timeout_s):
            await self._changed.wait()

    async def recover(self) -> int:
        """Fail builds whose process is gone and remove what they left. Returns how many were failed.

        The record is failed first, so no build stays stuck; removing its leftovers waits for the
        engine when it is away (they stay listed in the record until then).
        """
        failed = 0
        for rec in await unfinished_builds(self.store.db):
            if rec.id in self._runs or _owner_alive(rec.owner, rec.heartbeat_at):
                continue
            ts = self.store.scoped(rec.tenant_id)
            error = "interrupted: the control plane stopped during the build"
            if await ts.builds.finish(rec.id, "failed", error, "build again"):
                failed += 1
                path = self.log_path(rec.tenant_id, rec.id)
                if path.exists():
                    with open(path, "a") as f:
                        f.write(f"[agenthost] failed: {error}\n")
                await self._remove_leftovers(ts, rec, tag=True)
        for rec in await builds_with_leftovers(self.store.db):
            await self._remove_leftovers(self.store.scoped(rec.tenant_id), rec, tag=False)
        return failed

    async def _remove_leftovers(self, ts: TenantStore, rec: BuildRecord, tag: bool) -> None:
        try:
            await anyio.to_thread.run_sync(_rmtree, self.workdir(rec.id))
            if tag:
                await self.builder.remove_image(self.tag_for(rec))
            await self.builder.remove_layers(rec.leftovers)
        except AgentHostError as exc:
            log.warning("build %s: removing its leftovers failed, will retry: %s", rec.id, exc)
            return
        await ts.builds.set_leftovers(rec.id, [])

    async def prune_images(self, ts: TenantStore, name: str) -> list[str]:
        """Keep the newest ``build_keep_images`` images of one name, and any a service runs; remove older ones."""
        in_use = {svc.spec.image for svc in await ts.services.all()}
        removed = []
        for rec in (await ts.builds.find(name, "succeeded", 1000))[self.settings.build_keep_images :]:
            if rec.image and rec.image not in in_use and await self.builder.image_exists(rec.image):
                await self.builder.remove_image(rec.image)
                removed.append(rec.image)
        return removed

    # -- use-cases ------------------------------------------------------------------------------

    async def start(self, p: Principal, req: BuildRequest, report: Reporter) -> Build:
        """Validate, record the build as queued and start it; with ``wait``, follow it for a bounded time.

        Raises: InvalidInput (refused source, bad ref or dockerfile), QuotaExceeded (queue full).
        """
        if self._tg is None:
            raise AgentHostError("the build runner is not running in this process")
        ts = self.store.scoped(p.tenant_id)
        src = parse_git_url(req.git_url, self.settings.allow_local_git, self.settings.data_dir)
        if src.host is not None and src.port is not None:
            await self._precheck_host(src.host, src.port, src.loopback)
        if req.dockerfile is not None:
            try:
                check_dockerfile_path(req.dockerfile)
            except BuildFailed as exc:
                raise InvalidInput(exc.message, exc.hint) from exc
        if req.ref is not None and (not req.ref.strip() or req.ref.startswith("-") or ".." in req.ref):
            raise InvalidInput(f"ref {req.ref!r} is not a valid branch, tag or commit", "e.g. 'main', 'v1.2' or a sha")
        limit = self.settings.build_timeout_s
        if req.timeout_s is not None and req.timeout_s > limit:
            raise InvalidInput(f"timeout_s {req.timeout_s:g} is above this platform's limit of {limit:g} s")
        if await ts.builds.active_count() >= self.settings.build_queue_limit:
            raise QuotaExceeded(
                f"you already have {self.settings.build_queue_limit} builds queued or running",
                "wait for them (list_builds) or cancel one (cancel_build)",
            )
        name = req.name or default_name(src.url)
        rec = await ts.builds.insert(name, src.url, req.ref, req.dockerfile, req.timeout_s or limit, self.owner)
        run = Run(rec)
        self._runs[rec.id] = run
        self._tg.start_soon(execute, self, run)
        await report(f"build {rec.id} queued", 0, None)
        if req.wait:
            await self._follow(ts, rec.id, req.wait_timeout_s or self.settings.wait_timeout_s, report, 0)
        return await self.view(ts, await ts.builds.get(rec.id))

    async def _precheck_host(self, host: str, port: int, loopback: bool) -> None:
        """Refuse a host that resolves to a forbidden address now, not minutes later in the build."""
        try:
            with anyio.fail_after(5):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError):
            return  # unreachable: the build fails with git's own words
        addresses = sorted({str(i[4][0]) for i in infos})
        check_addresses(host, addresses, self.settings.git_allow_private_hosts, allow_loopback=loopback)

    async def _follow(self, ts: TenantStore, build_id: str, budget: float, report: Reporter, offset: int) -> int:
        """Send new log lines as progress until the build is done or ``budget`` passes. Returns the offset."""
        started = time.monotonic()
        rec = await ts.builds.get(build_id)
        path = self.log_path(ts.tenant_id, build_id)
        while True:
            text, offset, _ = await anyio.to_thread.run_sync(read_log, path, None, offset, 16 * 1024)
            elapsed = time.monotonic() - started
            if text.strip():
                await report(text.rstrip()[-2000:], elapsed, budget)
            if rec.done or elapsed >= budget:
                return offset
            await self.changed_or(0.25)
            rec = await self._checked(ts, await ts.builds.get(build_id))

    async def _checked(self, ts: TenantStore, rec: BuildRecord) -> BuildRecord:
        """A build whose process died is failed now, not at the next recovery pass."""
        if not rec.done and rec.id not in self._runs and not _owner_alive(rec.owner, rec.heartbeat_at):
            await self.recover()
            rec = await ts.builds.get(rec.id)
        return rec

    async def view(self, ts: TenantStore, rec: BuildRecord) -> Build:
        rec = await self._checked(ts, rec)
        tail = None
        if rec.status in ("failed", "cancelled"):
            path = self.log_path(ts.tenant_id, rec.id)
            text, _, _ = await anyio.to_thread.run_sync(read_log, path, _LOG_TAIL_LINES, None, 8 * 1024)
            tail = untrusted(text)
        return Build(
            id=rec.id,
            name=rec.name,
            status=rec.status,
            git_url=rec.git_url,
            ref=rec.ref,
            commit=rec.commit,
            recipe=rec.recipe,
            recipe_detail=rec.recipe_detail,
            image=rec.image,
            port=rec.port,
            queue_position=await ts.builds.queue_position(rec.id) if rec.status == "queued" else None,
            error=rec.error,
            hint=rec.error_hint,
            log_tail=tail,
            created_at=rec.created_at,
            started_at=rec.started_at,
            finished_at=rec.finished_at,
        )

    async def get(self, p: Principal, build_id: str) -> Build:
        ts = self.store.scoped(p.tenant_id)
        return await self.view(ts, await ts.builds.get(build_id))

    async def list_builds(self, p: Principal, name: str | None, limit: int) -> list[BuildSummary]:
        ts = self.store.scoped(p.tenant_id)
        return [_summary(await self._checked(ts, rec)) for rec in await ts.builds.find(name, None, limit)]

    async def logs(
        self, p: Principal, build_id: str, tail: int, offset: int | None, follow: bool, report: Reporter
    ) -> BuildLogOutput:
        ts = self.store.scoped(p.tenant_id)
        rec = await ts.builds.get(build_id)
        path = self.log_path(ts.tenant_id, rec.id)
        if follow and not rec.done:
            start = offset if offset is not None else _end_of(path)
            await self._follow(ts, rec.id, self.settings.wait_timeout_s, report, start)
            rec = await self._checked(ts, await ts.builds.get(build_id))
        max_bytes = self.settings.log_max_bytes
        text, next_offset, cut = await anyio.to_thread.run_sync(
            read_log, path, None if offset is not None else tail, offset, max_bytes
        )
        return BuildLogOutput(
            build_id=rec.id, status=rec.status, output=untrusted(text), next_offset=next_offset, truncated=cut
        )

    async def cancel(self, p: Principal, build_id: str, wait: bool = True) -> BuildSummary:
        """Stop a queued or running build; a finished one is returned as it is."""
        ts = self.store.scoped(p.tenant_id)
        rec = await self._checked(ts, await ts.builds.get(build_id))
        if rec.done:
            return _summary(rec)
        await ts.builds.update(rec.id, cancel_requested=1)
        if rec.status == "queued":
            await ts.builds.finish(rec.id, "cancelled", "cancelled by cancel_build while queued")
        if rec.id in self._runs:
            self._runs[rec.id].cancel()
        if wait:
            with anyio.move_on_after(self.settings.wait_timeout_s):
                while not (rec := await self._checked(ts, await ts.builds.get(rec.id))).done or rec.id in self._runs:
                    await self.changed_or(0.25)
        return _summary(await ts.builds.get(rec.id))

    async def image_for_deploy(self, ts: TenantStore, build_id: str) -> tuple[str, int | None]:
        """The image and port of a tenant's succeeded build. Raises: NotFound, InvalidInput, ImageNotFound."""
        rec = await ts.builds.get(build_id)
        if rec.status != "succeeded" or rec.image is None:
            hint = (
                "wait for it: get_build shows its progress"
                if rec.status in ("queued", "running")
                else "read build_logs, fix the cause and build again"
            )
            raise InvalidInput(f"build {rec.id} is {rec.status}, not succeeded", hint)
        if self.pulls_from_registry and registry_of(rec.image):
            if not await in_registry(rec.image):
                raise ImageNotFound(f"the image of build {rec.id} is no longer in the registry", "build it again")
        elif not await self.builder.image_exists(rec.image):
            raise ImageNotFound(f"the image of build {rec.id} is no longer on this host", "build it again")
        return rec.image, rec.port


def _summary(rec: BuildRecord) -> BuildSummary:
    return BuildSummary(
        id=rec.id,
        name=rec.name,
        status=rec.status,
        commit=rec.commit,
        image=rec.image,
        error=rec.error,
        created_at=rec.created_at,
    )


def _end_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
