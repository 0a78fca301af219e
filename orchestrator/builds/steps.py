"""One build's steps: fetch one commit, pick a recipe, check what the Dockerfile fetches, build, push.

The runner calls them once the build has its slot, inside the build's time limit, and records the
``Outcome`` they leave; ``build_root`` is where each build gets its working directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..backends.building import Builder, BuildSpec
from ..errors import AgentHostError, BuildFailed, InvalidInput
from ..images import ImagePolicy
from ..labels import L_BUILD, L_NAME, L_TENANT
from ..models import BuildRecord, BuildStatus
from ..settings import Settings
from ..store import TenantStore
from .git import Caps, check_tree, fetch_source
from .logs import BuildLog
from .pins import BuildPins
from .recipes import check_add_sources, plan_build
from .sources import parse_git_url

__all__ = ["BuildSteps", "Outcome", "build_root"]


@dataclass
class Outcome:
    """What a build came to; recorded once, by the runner, however the build ended."""

    status: BuildStatus = "failed"
    error: str | None = None
    hint: str | None = None
    tag: str | None = None
    layers: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)


class BuildSteps:
    def __init__(self, settings: Settings, builder: Builder, policy: ImagePolicy, pins: BuildPins) -> None:
        self.settings = settings
        self.builder = builder
        self.policy = policy
        self.pins = pins

    def tag_for(self, rec: BuildRecord) -> str:
        prefix = self.settings.registry.strip().rstrip("/") or "ah-build"
        return f"{prefix}/{rec.tenant_id}/{rec.name}:{rec.id}"

    async def run(
        self, ts: TenantStore, rec: BuildRecord, buildlog: BuildLog, workdir: Path, out: Outcome, deadline: float
    ) -> None:
        """Raises: BuildFailed, AgentHostError; ``out`` holds what the build made so far (its tag, layers)."""
        settings = self.settings

        async def say(line: str) -> None:
            buildlog.write(line)

        await say(f"[agenthost] build {rec.id}: {rec.git_url} at {rec.ref or 'the default branch'}")
        try:
            src = parse_git_url(rec.git_url, settings.allow_local_git, settings.data_dir)
        except InvalidInput as exc:
            raise BuildFailed(exc.message, exc.hint) from exc
        run_as = (settings.build_git_uid, settings.build_git_gid) if os.geteuid() == 0 else None
        caps = Caps(settings.build_max_source_mb * 1024 * 1024, settings.build_max_source_files, run_as)
        await anyio.to_thread.run_sync(_fresh_dir, workdir, run_as)
        checkout = workdir / "git" / "src"
        try:
            fetched = await fetch_source(
                src,
                rec.ref,
                checkout,
                workdir / "git" / "home",
                say,
                allow_local=settings.allow_local_git,
                allow_private=settings.git_allow_private_hosts,
                caps=caps,
            )
        finally:
            # git is done (its process group killed): from here on only the control plane enters the checkout.
            await anyio.to_thread.run_sync(os.chmod, workdir, 0o700)
        await ts.builds.update(rec.id, commit_sha=fetched.commit)
        await say(f"[agenthost] checked out {fetched.commit}")
        plan = await anyio.to_thread.run_sync(plan_build, checkout, rec.dockerfile, settings)
        await ts.builds.update(rec.id, recipe=plan.recipe, recipe_detail=plan.detail)
        check_add_sources(plan.text)
        await self.policy.check_dockerfile(
            plan.text, rec.tenant_id, lambda image: self.pins.pinned(ts, image, on_builder=True)
        )
        dockerfile = plan.dockerfile
        if plan.generated is not None:
            generated = workdir / "Dockerfile.generated"
            generated.write_text(plan.generated)
            dockerfile = str(generated)
            await say(f"[agenthost] recipe {plan.recipe}: {plan.detail}; generated Dockerfile:\n{plan.generated}")
        else:
            await say(f"[agenthost] recipe dockerfile: {plan.dockerfile}")
        await anyio.to_thread.run_sync(check_tree, checkout, caps)
        tag = self.tag_for(rec)

        async def on_layer(layer: str) -> None:
            out.layers.append(layer)
            await ts.builds.set_leftovers(rec.id, out.layers)

        out.tag = tag
        spec = BuildSpec(
            context=checkout,
            dockerfile=dockerfile,
            tag=tag,
            memory_mb=settings.build_memory_mb,
            cpus=settings.build_cpus,
            timeout_s=max(1.0, deadline - anyio.current_time()),
            network=settings.build_network,
            labels={L_TENANT: rec.tenant_id, L_BUILD: rec.id, L_NAME: rec.name},
            pids_limit=settings.build_pids_limit,
            disk_mb=settings.build_disk_mb,
            on_log=say,
            on_layer=on_layer,
        )
        image = await self.builder.build_image(spec)
        digest = image.digest
        if settings.registry:
            await say(f"[agenthost] pushing {tag}")
            digest = await self.builder.push_image(tag, say) or digest
        port = plan.port or (image.ports[0] if image.ports else None)
        out.values = {"image": tag, "image_digest": digest, "image_size": image.size_bytes, "port": port}
        await say(f"[agenthost] built {tag}" + (f" (port {port})" if port else ""))


def build_root(settings: Settings) -> Path:
    """Where builds get their directories: made if missing, others may pass through but not write.

    Raises: AgentHostError when it is inside the data dir, or another user owns it or may write to it.
    """
    root = settings.build_dir or Path(tempfile.gettempdir()) / "agenthost-builds"
    data = settings.data_dir.resolve()
    if root.resolve() == data or data in root.resolve().parents:
        raise AgentHostError("build_dir is inside the data dir", "set build_dir to a directory outside it")
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    st = root.lstat()
    if st.st_uid != os.geteuid() or (stat.S_ISDIR(st.st_mode) and st.st_mode & 0o022):
        raise AgentHostError(
            f"build_dir {root} belongs to another user, or others may write to it",
            "remove it, or set build_dir to a directory only agenthost's user may write to",
        )
    if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o111 != 0o111:
        root.chmod(stat.S_IMODE(st.st_mode) | 0o111)  # the unprivileged git passes through to its own dir
    return root


def _fresh_dir(path: Path, run_as: tuple[int, int] | None) -> None:
    """``path`` (root's; others may only pass through) holding ``git/`` and ``git/home``, git's own."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    path.chmod(0o711)
    for sub in (path / "git", path / "git" / "home"):
        sub.mkdir(mode=0o700)
        if run_as is not None:
            os.chown(sub, *run_as)
