"""The offline image builder: images from Debian packages, cached by recipe."""

from __future__ import annotations

import subprocess

import docker
import pytest

from orchestrator.images import RECIPES, host_debian_mirror
from orchestrator.settings import Settings

from .harness import VENV_BIN

pytestmark = [pytest.mark.e2e]


def test_second_build_is_cached(docker_client: docker.DockerClient, platform_images: Settings) -> None:
    proc = subprocess.run(
        [str(VENV_BIN / "agenthost"), "images", "build", "base", "python"], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    assert "base: cached, python: cached" in proc.stdout
    for name in ("base", "python"):
        recipe = RECIPES[name]
        image = docker_client.images.get(getattr(platform_images, recipe.setting))
        assert image.labels["agenthost.recipe"] == recipe.digest(platform_images.debian_suite)
        assert image.attrs["Config"]["User"] == "10001"  # non-root by default


def test_recipe_digest_tracks_content() -> None:
    base = RECIPES["base"]
    assert base.digest("bookworm") != base.digest("trixie")
    changed = type(base)(
        setting=base.setting, packages=(*base.packages, "curl"), setup=base.setup, changes=base.changes
    )
    assert changed.digest("bookworm") != base.digest("bookworm")
    assert host_debian_mirror() is None or host_debian_mirror().startswith("http")  # type: ignore[union-attr]
