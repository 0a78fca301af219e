"""Git repositories for build tests, unit and e2e alike (tests/e2e/harness.py re-exports these)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git", "make_repo"]


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a test identity; returns its stdout, stripped."""
    out = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def make_repo(path: Path, files: dict[str, str]) -> Path:
    """A git repository at ``path`` with ``files`` committed on ``main``. Builds fetch with an unprivileged
    git: put it under a directory that uid can read (the ``repo_dir`` fixture), not under pytest's tmp_path."""
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "first")
    return path
