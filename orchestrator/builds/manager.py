"""Builds from git: queue per tenant, build in isolation, push to the local registry, logs that outlive us.

A build is recorded (status ``queued``) before any work starts and runs in the process that
accepted it (``runner``): it waits for a slot, fetches one commit (``git``), picks a recipe
(``recipes``), builds with the engine, and pushes the image, tagged
``<registry>/<tenant>/<name>:<build>``, to the local registry so Nomad clients can pull it
(``steps``). Its log is a file in the data dir (``logs``). A build whose process died is
failed, and what it left removed, by the runner of any process on the data dir.

Isolation, and what it does not cover:

- The build never sees the control plane: sources are checked out into a fresh directory under
  ``build_dir`` (a temp dir by default; one inside the data dir, or one others own or may write,
  is refused), ``.git`` is dropped, and the context holds nothing but the repository. No env, secrets
  or volumes are given to a build. Before the engine sees the Dockerfile, every image it names must be
  one the tenant may use (``images.policy``), and no ADD may download anything (``images.dockerfile``).
- git runs on the host (``git``) as an unprivileged uid/gid (``build_git_uid``, 65534, no
  groups; when agenthost is root) in ``<build>/git``, the one directory it owns. The build dir is
  closed to all but root once git is done, and the control plane never reads the checkout through
  a symlink. No operator git config or credentials, no hooks, no background gc, no redirects, only
  https (local transports when the operator allows them; a local repository must be readable by
  that uid), checked addresses pinned, a byte cap (``build_max_source_mb``) and a file-count cap
  (``build_max_source_files``, git's objects included) watched every second while it fetches and
  checked again before the build, its process group killed when the build stops. git's CPU and
  memory are not limited, and it can overshoot a cap by what it writes in a second.
- RUN steps run in the engine's build containers under the engine's default runtime (the build
  API cannot name one). With ``"default-runtime": "runsc"`` in daemon.json (what
  ``infra/docker_daemon_config.py`` writes; agenthost's own workloads always name their runtime)
  they are gVisor sandboxes without raw sockets. Under runc they share the host's kernel with
  Docker's default capabilities, NET_RAW included (raw and forged packets on the egress bridge
  they share with services), seccomp and AppArmor: every build log and platform_status say so.
- Either way, per step: memory+swap (``build_memory_mb``), a CPU quota (``build_cpus``), the
  build's time limit (``build_timeout_s``); a pids limit (``build_pids_limit``) on a per-build pids
  cgroup given as the steps' cgroup parent (cgroupfs driver, cgroup v1 or v2; with the systemd
  driver or a remote engine there is none, said in the log and status; under runsc it counts the
  sandbox's own ~80 threads and one host process per guest process); a disk limit
  (``build_disk_mb``) on the committed layers plus the running step's writable layer, measured at
  each new layer and every 2 s: a watch, not a quota, so a step can overshoot by what it writes
  between two looks (a ``fallocate`` by any amount; only a storage quota on the engine's data root
  is hard); and the network of the ``build_network`` policy: the egress bridge of ``open`` or
  ``web`` (80/443), where containers reach neither each other nor the host (control plane,
  registry), or none.
- Under this host's runsc (Debian's 20221219) ``/tmp`` in a RUN step is the sandbox's own tmpfs
  (not committed, counted as memory), and coreutils ``ls``/``stat`` fail with EINVAL (statx with
  AT_NO_AUTOMOUNT is refused).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import anyio.abc
from pydantic import BaseModel, Field

from ..backends.building import Builder
from ..errors import BuildFailed, InvalidInput, QuotaExceeded
from ..events import EventLog
from ..images import ImagePolicy
from ..models import BuildRecord, Principal, ResourceName, untrusted
from ..progress import Reporter
from ..settings import Settings
from ..store import Store, TenantStore
from .logs import REMOVED_NOTE, LogFiles, cap_logs, read_log
from .models import Build, BuildLogOutput, BuildSummary
from .pins import BuildPins
from .recipes import check_dockerfile_path
from .runner import BuildRunner, owner_alive_at
from .sources import check_addresses, check_ref, default_name, parse_git_url

__all__ = ["BuildManager", "BuildRequest"]

_LOG_TAIL_LINES = 30
# The longest a builder takes to stop a build: the engine's grace to end it, a cut, then the clean-up.
_CANCEL_WAIT_S = 150.0


class BuildRequest(BaseModel):
    git_url: str = Field(min_length=1, max_length=1024)
    ref: str | None = Field(None, max_length=200)
    name: ResourceName | None = None
    dockerfile: str | None = Field(None, max_length=256)
    timeout_s: float | None = Field(None, gt=0)
    wait: bool = True
    wait_timeout_s: float | None = Field(None, gt=0, le=600)


class BuildManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        builder: Builder,
        *,
        pulls_from_registry: bool = False,
        events: EventLog | None = None,
    ) -> None:
        """``pulls_from_registry``: workloads run on nodes that pull images (Nomad), not on the builder's engine;
        ``events``: the event log, where builds that end are recorded."""
        self.settings = settings
        self.store = store
        self.pins = BuildPins(builder, via_registry=pulls_from_registry, ca_file=settings.registry_ca_file)
        self.log_files = LogFiles(settings.data_dir)
        # Its own policy: a Dockerfile's FROM is checked against the tenant's builds on the builder's engine.
        events = events or EventLog(settings, store)
        self.runner = BuildRunner(settings, store, builder, ImagePolicy(settings), self.pins, self.log_files, events)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Host this process's builds until cancelled (``BuildRunner.run``)."""
        await self.runner.run(task_status=task_status)

    async def cap_logs(self, ts: TenantStore) -> int:
        """Remove the oldest finished builds' logs so the tenant's stay within its quota, with room for one
        more build's. Returns how many went."""
        cap = (await self.store.tenants.get(ts.tenant_id)).quotas.max_build_log_bytes
        keep = max(0, cap - self.settings.build_log_max_bytes)
        finished = await ts.builds.finished_oldest_first()
        return len(await anyio.to_thread.run_sync(cap_logs, self.log_files.folder(ts.tenant_id), finished, keep))

    # -- use-cases ------------------------------------------------------------------------------

    async def start(self, p: Principal, req: BuildRequest, report: Reporter) -> Build:
        """Validate, record the build as queued and start it; with ``wait``, follow it for a bounded time.

        Raises: InvalidInput (refused source, bad ref or dockerfile), QuotaExceeded (queue full).
        """
        self.runner.check_hosting()
        ts = self.store.scoped(p.tenant_id)
        src = parse_git_url(req.git_url, self.settings.allow_local_git, self.settings.data_dir)
        if src.host is not None and src.port is not None:
            await self._precheck_host(src.host, src.port, src.loopback)
        if req.dockerfile is not None:
            try:
                check_dockerfile_path(req.dockerfile)
            except BuildFailed as exc:
                raise InvalidInput(exc.message, exc.hint) from exc
        if req.ref is not None:
            check_ref(req.ref)
        limit = self.settings.build_timeout_s
        if req.timeout_s is not None and req.timeout_s > limit:
            raise InvalidInput(f"timeout_s {req.timeout_s:g} is above this platform's limit of {limit:g} s")
        name = req.name or default_name(src.url)
        async with self.store.db.transaction() as tx:
            # Counted where the build is recorded, so concurrent calls cannot queue past the limit.
            if await ts.builds.active_count(tx) >= self.settings.build_queue_limit:
                raise QuotaExceeded(
                    f"you already have {self.settings.build_queue_limit} builds queued or running",
                    "wait for them (list_builds) or cancel one (cancel_build)",
                )
            rec = await ts.builds.insert(
                name, src.url, req.ref, req.dockerfile, req.timeout_s or limit, self.runner.owner, tx
            )
        self.runner.submit(rec)
        await self.cap_logs(ts)
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
        path = self.log_files.path(ts.tenant_id, build_id)
        while True:
            text, offset, _ = await anyio.to_thread.run_sync(read_log, path, None, offset, 16 * 1024)
            elapsed = time.monotonic() - started
            if text.strip():
                await report(text.rstrip()[-2000:], elapsed, budget)
            if rec.done or elapsed >= budget:
                return offset
            await self.runner.changed_or(0.25)
            rec = await self._checked(ts, await ts.builds.get(build_id))

    async def _checked(self, ts: TenantStore, rec: BuildRecord) -> BuildRecord:
        """A build whose process died is failed now, not at the next recovery pass."""
        if not rec.done and not self.runner.runs(rec.id) and not owner_alive_at(rec.owner, rec.heartbeat_at):
            await self.runner.recover()
            rec = await ts.builds.get(rec.id)
        return rec

    async def view(self, ts: TenantStore, rec: BuildRecord) -> Build:
        rec = await self._checked(ts, rec)
        tail = None
        if rec.status in ("failed", "cancelled"):
            path = self.log_files.path(ts.tenant_id, rec.id)
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
        path = self.log_files.path(ts.tenant_id, rec.id)
        if follow and not rec.done:
            start = offset if offset is not None else _end_of(path)
            await self._follow(ts, rec.id, self.settings.wait_timeout_s, report, start)
            rec = await self._checked(ts, await ts.builds.get(build_id))
        max_bytes = self.settings.log_max_bytes
        text, next_offset, cut = await anyio.to_thread.run_sync(
            read_log, path, None if offset is not None else tail, offset, max_bytes
        )
        if rec.done and not text and not path.exists():
            text = REMOVED_NOTE
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
        # Decided by the store, not by ``rec``: a runner (in another process, maybe) may have started the build
        # since it was read. A started one is stopped by its runner, which sees cancel_requested at its next
        # tick; the wait below sees it end.
        await ts.builds.finish(rec.id, "cancelled", "cancelled by cancel_build while queued", only_from=("queued",))
        self.runner.cancel(rec.id)
        if wait:
            with anyio.move_on_after(max(self.settings.wait_timeout_s, _CANCEL_WAIT_S)):
                while not (rec := await self._checked(ts, await ts.builds.get(rec.id))).done or self.runner.runs(
                    rec.id
                ):
                    await self.runner.changed_or(0.25)
        return _summary(await ts.builds.get(rec.id))


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
