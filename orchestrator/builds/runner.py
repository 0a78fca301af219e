"""The build runner: hosts this process's builds, each from its place in the queue to its recorded outcome.

A build runs in the process that accepted it: it waits for a slot (the tenant's
``max_concurrent_builds`` and the host's ``build_max_concurrent``), runs its steps (``steps``)
within its time limit, and whatever ends it (success, failure, time limit, cancel_build, the
control plane stopping), the outcome is recorded exactly once and nothing is left behind: the
checkout is deleted, and an image or layers of a build that did not succeed are removed.

A heartbeat marks the builds this process runs; on startup and every few seconds, builds whose
process is gone (a crash, a restart) are failed and their leftovers removed, so no build is ever
stuck. Over stdio the process is the MCP session, so ending the session ends (fails) its builds.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.abc

from ..backends.building import Builder
from ..errors import AgentHostError, BuildFailed
from ..events import EventLog
from ..images import ImagePolicy
from ..models import BuildRecord
from ..owners import on_this_host, owner_alive, owner_token
from ..settings import Settings
from ..store import Store, TenantStore, builds_with_leftovers, cancel_requested, touch_builds, unfinished_builds
from .logs import BuildLog, LogFiles
from .pins import BuildPins
from .steps import BuildSteps, Outcome, build_root

__all__ = ["BuildRunner", "owner_alive_at"]

log = logging.getLogger(__name__)
_TICK_S = 1.0
_RECOVER_EVERY_S = 10.0
_STALE_S = 60.0


def owner_alive_at(owner: str, heartbeat: datetime) -> bool:
    """Whether the process running a build lives: asked of /proc on this host, else by its heartbeat."""
    if on_this_host(owner):
        return owner_alive(owner)
    return (datetime.now(UTC) - heartbeat).total_seconds() < _STALE_S


@dataclass
class _Run:
    """A build this process runs (queued or running)."""

    rec: BuildRecord
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_requested: bool = False

    def cancel(self) -> None:
        self.cancel_requested = True
        self.scope.cancel()


class BuildRunner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        builder: Builder,
        policy: ImagePolicy,
        pins: BuildPins,
        log_files: LogFiles,
        events: EventLog,
    ) -> None:
        self.settings = settings
        self.events = events
        self.store = store
        self.builder = builder
        self.log_files = log_files
        self.steps = BuildSteps(settings, builder, policy, pins)
        self.owner = owner_token()
        self._runs: dict[str, _Run] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._changed = anyio.Event()

    def workdir(self, build_id: str) -> Path:
        return build_root(self.settings) / build_id

    def runs(self, build_id: str) -> bool:
        """Whether this process runs the build now."""
        return build_id in self._runs

    # -- hosting ----------------------------------------------------------------------------------

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

    def check_hosting(self) -> None:
        """Raises: AgentHostError when this process hosts no builds (call it before recording one)."""
        if self._tg is None:
            raise AgentHostError("the build runner is not running in this process")

    def submit(self, rec: BuildRecord) -> None:
        """Run a build recorded as queued. Raises: AgentHostError when the runner is not running."""
        self.check_hosting()
        assert self._tg is not None
        run = _Run(rec)
        self._runs[rec.id] = run
        self._tg.start_soon(self._execute, run)

    def cancel(self, build_id: str) -> None:
        if build_id in self._runs:
            self._runs[build_id].cancel()

    def _forget(self, build_id: str) -> None:
        self._runs.pop(build_id, None)
        self._changed.set()
        self._changed = anyio.Event()

    async def changed_or(self, timeout_s: float) -> None:
        """Sleep until a build of this process finishes, or ``timeout_s`` (other processes' are polled)."""
        with anyio.move_on_after(timeout_s):
            await self._changed.wait()

    # -- recovery ---------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Fail builds whose process is gone and remove what they left. Returns how many were failed.

        The record is failed first, so no build stays stuck; removing its leftovers waits for the
        engine when it is away (they stay listed in the record until then).
        """
        failed = 0
        for rec in await unfinished_builds(self.store.db):
            if rec.id in self._runs or owner_alive_at(rec.owner, rec.heartbeat_at):
                continue
            ts = self.store.scoped(rec.tenant_id)
            error = "interrupted: the control plane stopped during the build"
            if await ts.builds.finish(rec.id, "failed", error, "build again"):
                failed += 1
                await self.events.record(ts, "build", rec.id, rec.name, "failed", error)
                path = self.log_files.path(rec.tenant_id, rec.id)
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
                await self.builder.remove_image(self.steps.tag_for(rec))
            done = await self.builder.remove_layers(rec.leftovers)
        except AgentHostError as exc:
            log.warning("build %s: removing its leftovers failed, will retry: %s", rec.id, exc)
            return
        await ts.builds.set_leftovers(rec.id, [layer for layer in rec.leftovers if layer not in done])

    async def prune_images(self, ts: TenantStore, name: str) -> list[str]:
        """Keep the newest ``build_keep_images`` images of one name and ``max_build_images`` of the tenant (it may
        use many names), and any a service runs; remove older ones."""
        in_use = {svc.spec.image for svc in await ts.services.all()}
        cap = (await self.store.tenants.get(ts.tenant_id)).quotas.max_build_images
        older = (await ts.builds.find(name, "succeeded", 1000))[self.settings.build_keep_images :]
        # Each build prunes after it, so past the cap only the few newest can still have an image.
        older += (await ts.builds.find(None, "succeeded", cap + 20))[cap:]
        removed: list[str] = []
        for rec in older:
            if rec.image and rec.image not in {*in_use, *removed} and await self.builder.image_exists(rec.image):
                await self.builder.remove_image(rec.image)
                removed.append(rec.image)
        return removed

    # -- one build --------------------------------------------------------------------------------

    async def _execute(self, run: _Run) -> None:
        rec = run.rec
        ts = self.store.scoped(rec.tenant_id)
        buildlog = BuildLog(self.log_files.path(rec.tenant_id, rec.id), self.settings.build_log_max_bytes)
        workdir = self.workdir(rec.id)
        out = Outcome()
        try:
            with run.scope:
                if await self._wait_for_slot(ts, rec, buildlog):
                    with anyio.CancelScope(deadline=anyio.current_time() + rec.timeout_s) as limit:
                        await self.steps.run(ts, rec, buildlog, workdir, out, limit.deadline)
                        out.status = "succeeded"
                    if limit.cancelled_caught:
                        out.error = f"the build exceeded its time limit of {int(rec.timeout_s)} s"
                        out.hint = (
                            "make the build faster, or pass a larger timeout_s (up to the operator's build_timeout_s)"
                        )
            if run.scope.cancelled_caught or run.cancel_requested:
                out.status, out.error, out.hint = "cancelled", "cancelled by cancel_build", None
        except BuildFailed as exc:
            out.error, out.hint = exc.message, exc.hint
        except AgentHostError as exc:
            out.error, out.hint = f"[{exc.code}] {exc.message}", exc.hint
        except Exception as exc:  # a fault in one build must not take down the runner of all the others
            log.exception("build %s crashed", rec.id)
            out.error = f"the build failed unexpectedly ({type(exc).__name__})"
            out.hint = AgentHostError.default_hint
        except BaseException:
            out.error = "interrupted: the control plane stopped during the build"
            out.hint = "build again"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(ts, rec, buildlog, workdir, out)

    async def _wait_for_slot(self, ts: TenantStore, rec: BuildRecord, buildlog: BuildLog) -> bool:
        """Wait in the tenant's line. Returns False when the build left the queue another way (cancelled)."""
        told = False
        while True:
            limit = (await self.store.tenants.get(rec.tenant_id)).quotas.max_concurrent_builds
            status = await ts.builds.try_start(rec.id, limit, self.settings.build_max_concurrent)
            if status == "running":
                return True
            if status != "queued":
                return False
            if not told:
                ahead = await ts.builds.queue_position(rec.id)
                buildlog.write(f"[agenthost] queued: {ahead} of your builds ahead, at most {limit} run at once")
                told = True
            await self.changed_or(1.0)

    async def _finish(self, ts: TenantStore, rec: BuildRecord, buildlog: BuildLog, workdir: Path, out: Outcome) -> None:
        try:
            await anyio.to_thread.run_sync(shutil.rmtree, workdir, True)
            if out.status == "succeeded":
                buildlog.write("[agenthost] succeeded")
                await ts.builds.set_leftovers(rec.id, [])
                await ts.builds.finish(rec.id, "succeeded", **out.values)
                await self.events.record(ts, "build", rec.id, rec.name, "succeeded", f"image {out.values.get('image')}")
                try:
                    for image in await self.prune_images(ts, rec.name):
                        buildlog.write(f"[agenthost] removed an older image of {rec.name}: {image}")
                except AgentHostError as exc:
                    log.warning("build %s: pruning older images failed: %s", rec.id, exc)
                return
            buildlog.write(f"[agenthost] {out.status}: {out.error}")
            try:
                if out.tag is not None:
                    await self.builder.remove_image(out.tag)
                done = await self.builder.remove_layers(out.layers)
                out.layers = [layer for layer in out.layers if layer not in done]  # still in use: recovery retries
            except AgentHostError as exc:  # the record keeps the layers; recovery removes them later
                log.warning("build %s: cleanup postponed: %s", rec.id, exc)
            await ts.builds.set_leftovers(rec.id, out.layers)
            if not await ts.builds.finish(rec.id, out.status, out.error, out.hint):
                log.info("build %s was already finished", rec.id)
            else:
                await self.events.record(ts, "build", rec.id, rec.name, "failed", f"{out.status}: {out.error}")
        finally:
            buildlog.close()
            self._forget(rec.id)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
