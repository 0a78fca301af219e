"""Resolving refs from ls-remote output, and fetching one commit of a real local repository with git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.builds_git import fetch_source, resolve_ref
from orchestrator.builds_url import parse_git_url
from orchestrator.errors import BuildFailed

pytestmark = pytest.mark.anyio

LISTING = """ref: refs/heads/main\tHEAD
1111111111111111111111111111111111111111\tHEAD
1111111111111111111111111111111111111111\trefs/heads/main
2222222222222222222222222222222222222222\trefs/heads/dev
3333333333333333333333333333333333333333\trefs/tags/v1
4444444444444444444444444444444444444444\trefs/tags/v1^{}
"""


def test_resolve_ref() -> None:
    assert resolve_ref(LISTING, None) == ("HEAD", "1" * 40)
    assert resolve_ref(LISTING, "dev") == ("refs/heads/dev", "2" * 40)
    assert resolve_ref(LISTING, "v1") == ("refs/tags/v1", "4" * 40)  # the peeled commit of an annotated tag
    assert resolve_ref(LISTING, "refs/heads/main") == ("refs/heads/main", "1" * 40)
    assert resolve_ref(LISTING, "22222222") == ("2" * 40, "2" * 40)
    assert resolve_ref(LISTING, "abcdef12") == ("abcdef12", None)  # not advertised: fetched by id


def test_unknown_ref_lists_what_exists() -> None:
    with pytest.raises(BuildFailed) as err:
        resolve_ref(LISTING, "nope")
    assert "unknown ref 'nope'" in err.value.message
    assert "dev, main" in err.value.message and "v1" in err.value.message


def test_empty_repository() -> None:
    with pytest.raises(BuildFailed, match="no default branch"):
        resolve_ref("", None)


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args]
    return subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("one")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "1")
    (repo / "a.txt").write_text("two")
    _git(repo, "commit", "-q", "-am", "2")
    return repo


async def _fetch(source: Path, ref: str | None, dest: Path, max_bytes: int = 1 << 30) -> tuple[str, list[str]]:
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    src = parse_git_url(str(source), allow_local=True)
    home = dest.parent / "home"
    home.mkdir(exist_ok=True)
    got = await fetch_source(src, ref, dest, home, log, allow_local=True, allow_private=False, max_bytes=max_bytes)
    return got.commit, lines


async def test_fetch_default_branch_and_an_old_commit(source: Path, tmp_path: Path) -> None:
    commit, _ = await _fetch(source, None, tmp_path / "out1")
    assert commit == _git(source, "rev-parse", "HEAD")
    assert (tmp_path / "out1" / "a.txt").read_text() == "two"
    assert not (tmp_path / "out1" / ".git").exists()
    old = _git(source, "rev-parse", "HEAD~1")
    commit, _ = await _fetch(source, old[:9], tmp_path / "out2")
    assert commit == old
    assert (tmp_path / "out2" / "a.txt").read_text() == "one"


async def test_fetch_failures(source: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildFailed, match="repository unreachable"):
        await _fetch(tmp_path / "nothing", None, tmp_path / "o1")
    with pytest.raises(BuildFailed, match="unknown ref"):
        await _fetch(source, "deadbeef", tmp_path / "o2")
    with pytest.raises(BuildFailed, match="not a valid"):
        await _fetch(source, "--upload-pack=touch /tmp/x", tmp_path / "o3")


async def test_the_operators_git_config_is_not_used(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text('[url "file:///nowhere/"]\n\tinsteadOf = file://\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    commit, _ = await _fetch(source, None, tmp_path / "out")
    assert commit == _git(source, "rev-parse", "HEAD")


async def test_size_limit(source: Path, tmp_path: Path) -> None:
    (source / "big.bin").write_bytes(b"x" * 300_000)
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "big")
    with pytest.raises(BuildFailed, match="larger than the limit"):
        await _fetch(source, None, tmp_path / "out", max_bytes=100_000)
