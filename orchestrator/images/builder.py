"""The offline image builder: platform images from the distribution's packages, no registry needed.

``debootstrap`` makes a minimal Debian root once (cached as a tarball); each image is that
root plus its packages and setup, run in a chroot, then ``docker import``-ed with its
config. An image is rebuilt only when its recipe changes: the recipe's hash is a label on
the image, so a second run takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from ..errors import AgentHostError
from ..labels import L_RECIPE
from ..settings import Settings
from .databases import PG_BIN, PG_DATA, POSTGRES_ENTRYPOINT, POSTGRES_SETUP, REDIS_SETUP

__all__ = ["RECIPES", "Recipe", "build_images", "host_debian_mirror"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    setting: str  # the Settings field that names the image's tag
    packages: tuple[str, ...] = ()
    setup: str = ""  # shell run in the chroot after the packages are installed
    changes: tuple[str, ...] = ()  # Dockerfile instructions applied by `docker import --change`
    files: dict[str, str] = field(default_factory=dict)  # path in the image -> content

    def digest(self, suite: str) -> str:
        blob = json.dumps([suite, self.packages, self.setup, self.changes, sorted(self.files.items())])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_APP_USER = "groupadd -g 10001 app && useradd -u 10001 -g 10001 -m -d /home/app -s /bin/sh app"

RECIPES: dict[str, Recipe] = {
    "base": Recipe(
        setting="image_base",
        packages=("ca-certificates", "procps"),
        setup=_APP_USER,
        changes=('CMD ["/bin/sh"]', "USER 10001", "WORKDIR /home/app", "ENV LANG=C.UTF-8"),
    ),
    "python": Recipe(
        setting="image_python",
        packages=("ca-certificates", "procps", "python3", "python3-pip", "python3-venv"),
        setup=_APP_USER + " && mkdir -p /app && chown app:app /app",
        changes=(
            'CMD ["python3"]',
            "USER 10001",
            "WORKDIR /app",
            "ENV LANG=C.UTF-8",
            "ENV PYTHONUNBUFFERED=1",
        ),
    ),
    # The base of builds that detect a Node app (package.json): Debian's nodejs and npm.
    "node": Recipe(
        setting="image_node",
        packages=("ca-certificates", "procps", "nodejs", "npm"),
        setup=_APP_USER + " && mkdir -p /app && chown app:app /app",
        changes=(
            'CMD ["node"]',
            "USER 10001",
            "WORKDIR /app",
            "ENV LANG=C.UTF-8",
            "ENV NODE_ENV=production",
            "ENV npm_config_cache=/tmp/.npm",
            "ENV npm_config_update_notifier=false",
        ),
    ),
    # Postgres and Redis behave like the official images (db_images.py says how), so the
    # settings may point at either.
    "postgres": Recipe(
        setting="image_postgres",
        packages=("postgresql-15",),
        setup=POSTGRES_SETUP,
        files={"/usr/local/bin/docker-entrypoint.sh": POSTGRES_ENTRYPOINT},
        changes=(
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            "USER postgres",
            "ENV LANG=C.UTF-8",
            f"ENV PATH={PG_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"ENV PGDATA={PG_DATA}",
            "EXPOSE 5432",
        ),
    ),
    "redis": Recipe(
        setting="image_redis",
        packages=("redis-server",),
        setup=REDIS_SETUP,
        changes=('CMD ["redis-server"]', "USER redis", "WORKDIR /data", "ENV LANG=C.UTF-8", "EXPOSE 6379"),
    ),
}


def host_debian_mirror() -> str | None:
    """The Debian mirror this host's apt already uses, so the builder needs no address of its own."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, re.MULTILINE):
            uri = match.group(1)
            if "security" not in uri and uri.startswith(("http://", "https://")):
                return uri
    return None


def _run(argv: list[str], **kwargs: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise AgentHostError(
            f"{' '.join(argv[:3])} failed ({proc.returncode}): {proc.stderr[-2000:]}",
            "check that debootstrap is installed and the Debian mirror is reachable (agenthost doctor)",
        )


def _minbase(settings: Settings, cache: Path, say: Callable[[str], None]) -> Path:
    tarball = cache / f"rootfs-{settings.debian_suite}-minbase.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise AgentHostError("debootstrap is not installed", "apt-get install debootstrap")
    mirror = settings.debian_mirror or host_debian_mirror()
    say(f"debootstrap {settings.debian_suite} (minbase) from {mirror or 'the default mirror'}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        root = Path(tmp) / "root"
        argv = ["debootstrap", "--variant=minbase", "--include=ca-certificates", settings.debian_suite, str(root)]
        _run([*argv, mirror] if mirror else argv)
        _run(["tar", "-C", str(root), "-cf", str(tarball) + ".part", "."])
        os.replace(str(tarball) + ".part", tarball)
    return tarball


def _chroot_build(minbase: Path, recipe: Recipe, workdir: Path) -> Path:
    root = workdir / "root"
    root.mkdir()
    _run(["tar", "-C", str(root), "-xf", str(minbase)])
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if recipe.packages:
        _run(["chroot", str(root), "apt-get", "update", "-q"], env=env)
        _run(
            ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *recipe.packages],
            env=env,
        )
    for path, content in recipe.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if content.startswith("#!") else 0o644)
    if recipe.setup:
        _run(["chroot", str(root), "/bin/sh", "-ec", recipe.setup], env=env)
    _run(["chroot", str(root), "apt-get", "clean"], env=env)
    policy.unlink()
    for junk in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log/apt"):
        shutil.rmtree(root / junk, ignore_errors=True)
    (root / "etc/resolv.conf").write_text("")
    tarball = workdir / "image.tar"
    _run(["tar", "-C", str(root), "-cf", str(tarball), "."])
    return tarball


def build_images(
    settings: Settings, names: list[str] | None = None, force: bool = False, say: Callable[[str], None] = log.info
) -> dict[str, str]:
    """Build the named images (all by default). Returns name -> 'built' | 'cached'."""
    if os.geteuid() != 0:
        raise AgentHostError("the image builder needs root (debootstrap and chroot)", "run it with sudo")
    client = docker.from_env(version="auto", timeout=600)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agenthost"
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, str] = {}
    for name in names or list(RECIPES):
        recipe = RECIPES.get(name)
        if recipe is None:
            raise AgentHostError(f"no image recipe {name!r}", f"known: {', '.join(RECIPES)}")
        tag = str(getattr(settings, recipe.setting))
        digest = recipe.digest(settings.debian_suite)
        try:
            labels = client.images.get(tag).labels or {}
            if labels.get(L_RECIPE) == digest and not force:
                results[name] = "cached"
                say(f"{tag}: up to date")
                continue
        except docker.errors.ImageNotFound:
            pass
        minbase = _minbase(settings, cache, say)
        say(f"{tag}: building ({', '.join(recipe.packages) or 'no extra packages'})")
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            tarball = _chroot_build(minbase, recipe, Path(tmp))
            repo, _, version = tag.rpartition(":")
            changes = [*recipe.changes, f"LABEL {L_RECIPE}={digest}"]
            client.api.import_image_from_file(str(tarball), repository=repo, tag=version, changes=changes)
        results[name] = "built"
        say(f"{tag}: built")
    client.close()
    return results
