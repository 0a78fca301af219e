"""One build, start to end: wait for a slot, fetch, pick a recipe, build, push, record the outcome.

Whatever ends it (success, failure, time limit, cancel_build, the control plane stopping), the
outcome is recorded exactly once and nothing is left behind: the checkout is deleted, and an
image or layers of a build that did not succeed are removed.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .builds_git import fetch_source, tree_size
from .builds_logs import BuildLog
from .builds_recipes import check_base_images, plan_build
from .builds_url import parse_git_url
from .errors import AgentHostError, BuildFailed, InvalidInput
from .models import BuildRecord, BuildStatus
from .store import TenantStore

if TYPE_CHECKING:
    from .builds import BuildManager

__all__ = ["Run", "execute"]

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A build this process runs (queued or running)."""

    rec: BuildRecord
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel_requested: bool = False

    def cancel(self) -> None:
        self.cancel_requested = True
        self.scope.cancel()


@dataclass
class _Outcome:
    status: BuildStatus = "failed"
    error: str | None = None
    hint: str | None = None
    tag: str | None = None
    layers: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


async def execute(m: BuildManager, run: Run) -> None:
    rec = run.rec
    ts = m.store.scoped(rec.tenant_id)
    buildlog = BuildLog(m.log_path(rec.tenant_id, rec.id), m.settings.build_log_max_bytes)
    workdir = m.workdir(rec.id)
    out = _Outcome()
    try:
        with run.scope:
            if await _wait_for_slot(m, ts, rec, buildlog):
                with anyio.CancelScope(deadline=anyio.current_time() + rec.timeout_s) as limit:
                    await _build(m, ts, rec, buildlog, workdir, out, limit.deadline)
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
        out.error, out.hint = f"{exc.message}", exc.hint
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
            await _finish(m, ts, rec, buildlog, workdir, out)


async def _wait_for_slot(m: BuildManager, ts: TenantStore, rec: BuildRecord, buildlog: BuildLog) -> bool:
    """Wait in the tenant's line. Returns False when the build left the queue another way (cancelled)."""
    told = False
    while True:
        limit = (await m.store.tenants.get(rec.tenant_id)).quotas.max_concurrent_builds
        status = await ts.builds.try_start(rec.id, limit, m.settings.build_max_concurrent)
        if status == "running":
            return True
        if status != "queued":
            return False
        if not told:
            ahead = await ts.builds.queue_position(rec.id)
            buildlog.write(f"[agenthost] queued: {ahead} of your builds ahead, at most {limit} run at once")
            told = True
        await m.changed_or(1.0)


async def _build(
    m: BuildManager,
    ts: TenantStore,
    rec: BuildRecord,
    buildlog: BuildLog,
    workdir: Path,
    out: _Outcome,
    deadline: float,
) -> None:
    settings = m.settings

    async def say(line: str) -> None:
        buildlog.write(line)

    await say(f"[agenthost] build {rec.id}: {rec.git_url} at {rec.ref or 'the default branch'}")
    try:
        src = parse_git_url(rec.git_url, settings.allow_local_git, settings.data_dir)
    except InvalidInput as exc:
        raise BuildFailed(exc.message, exc.hint) from exc
    await anyio.to_thread.run_sync(_fresh_dir, workdir)
    checkout = workdir / "src"
    fetched = await fetch_source(
        src,
        rec.ref,
        checkout,
        workdir / "home",
        say,
        allow_local=settings.allow_local_git,
        allow_private=settings.git_allow_private_hosts,
        max_bytes=settings.build_max_source_mb * 1024 * 1024,
    )
    await ts.builds.update(rec.id, commit_sha=fetched.commit)
    await say(f"[agenthost] checked out {fetched.commit}")
    plan = await anyio.to_thread.run_sync(plan_build, checkout, rec.dockerfile, settings)
    await ts.builds.update(rec.id, recipe=plan.recipe, recipe_detail=plan.detail)
    check_base_images(plan.text, rec.tenant_id, settings.registry)
    dockerfile = plan.dockerfile
    if plan.generated is not None:
        generated = workdir / "Dockerfile.generated"
        generated.write_text(plan.generated)
        dockerfile = str(generated)
        await say(f"[agenthost] recipe {plan.recipe}: {plan.detail}; generated Dockerfile:\n{plan.generated}")
    else:
        await say(f"[agenthost] recipe dockerfile: {plan.dockerfile}")
    size = await anyio.to_thread.run_sync(tree_size, checkout)
    if size > settings.build_max_source_mb * 1024 * 1024:
        raise BuildFailed(f"the build context is larger than {settings.build_max_source_mb} MiB")
    tag = m.tag_for(rec)
    labels = {"agenthost.tenant": rec.tenant_id, "agenthost.build": rec.id, "agenthost.name": rec.name}

    async def on_layer(layer: str) -> None:
        out.layers.append(layer)
        await ts.builds.set_leftovers(rec.id, out.layers)

    remaining = max(1.0, deadline - anyio.current_time())
    out.tag = tag
    image = await m.builder.build_image(
        checkout,
        dockerfile,
        tag,
        say,
        settings.build_memory_mb,
        settings.build_cpus,
        remaining,
        settings.build_network,
        labels,
        on_layer,
    )
    digest = image.digest
    if settings.registry:
        await say(f"[agenthost] pushing {tag}")
        digest = await m.builder.push_image(tag, say) or digest
    port = plan.port or (image.ports[0] if image.ports else None)
    out.values = {"image": tag, "image_digest": digest, "image_size": image.size_bytes, "port": port}
    await say(f"[agenthost] built {tag}" + (f" (port {port})" if port else ""))


async def _finish(
    m: BuildManager, ts: TenantStore, rec: BuildRecord, buildlog: BuildLog, workdir: Path, out: _Outcome
) -> None:
    try:
        await anyio.to_thread.run_sync(shutil.rmtree, workdir, True)
        if out.status == "succeeded":
            buildlog.write("[agenthost] succeeded")
            await ts.builds.set_leftovers(rec.id, [])
            await ts.builds.finish(rec.id, "succeeded", **out.values)
            try:
                for image in await m.prune_images(ts, rec.name):
                    buildlog.write(f"[agenthost] removed an older image of {rec.name}: {image}")
            except AgentHostError as exc:
                log.warning("build %s: pruning older images failed: %s", rec.id, exc)
            return
        buildlog.write(f"[agenthost] {out.status}: {out.error}")
        try:
            if out.tag is not None:
                await m.builder.remove_image(out.tag)
            await m.builder.remove_layers(out.layers)
            out.layers = []
        except AgentHostError as exc:  # the record keeps the layers; recovery removes them later
            log.warning("build %s: cleanup postponed: %s", rec.id, exc)
        await ts.builds.set_leftovers(rec.id, out.layers)
        if not await ts.builds.finish(rec.id, out.status, out.error, out.hint):
            log.info("build %s was already finished", rec.id)
    finally:
        buildlog.close()
        m.forget(rec.id)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    (path / "home").mkdir(mode=0o700)
