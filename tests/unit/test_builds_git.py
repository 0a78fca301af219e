"""Resolving refs from ls-remote output, and fetching one commit of a real local repository with git."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.builds.git import Caps, fetch_source, resolve_ref
from orchestrator.builds.sources import parse_git_url
from orchestrator.errors import BuildFailed

from ..gitrepos import git, make_repo

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


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"a.txt": "one"})
    (repo / "a.txt").write_text("two")
    git(repo, "commit", "-q", "-am", "2")
    return repo


_CAPS = Caps(1 << 30, 10_000)


async def _fetch(source: Path, ref: str | None, dest: Path, caps: Caps = _CAPS) -> tuple[str, list[str]]:
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    src = parse_git_url(str(source), allow_local=True)
    home = dest.parent / "home"
    home.mkdir(exist_ok=True)
    got = await fetch_source(src, ref, dest, home, log, allow_local=True, allow_private=False, caps=caps)
    return got.commit, lines


async def test_fetch_default_branch_and_an_old_commit(source: Path, tmp_path: Path) -> None:
    commit, _ = await _fetch(source, None, tmp_path / "out1")
    assert commit == git(source, "rev-parse", "HEAD")
    assert (tmp_path / "out1" / "a.txt").read_text() == "two"
    assert not (tmp_path / "out1" / ".git").exists()
    old = git(source, "rev-parse", "HEAD~1")
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
    assert commit == git(source, "rev-parse", "HEAD")


async def test_size_limit(source: Path, tmp_path: Path) -> None:
    (source / "big.bin").write_bytes(b"x" * 300_000)
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "big")
    with pytest.raises(BuildFailed, match="larger than the limit"):
        await _fetch(source, None, tmp_path / "out", Caps(100_000, 10_000))


async def test_file_count_limit(source: Path, tmp_path: Path) -> None:
    for i in range(40):
        (source / f"f{i}.txt").write_text(str(i))
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "many")
    with pytest.raises(BuildFailed, match="more than the limit of 30 files"):
        await _fetch(source, None, tmp_path / "out", Caps(1 << 30, 30))


@pytest.mark.skipif(os.geteuid() != 0, reason="switching git to another uid needs root")
async def test_git_runs_as_the_given_uid_and_cannot_read_what_it_may_not(repo_dir: Path) -> None:
    repo = make_repo(repo_dir / "repo", {"a.txt": "one"})
    work = repo_dir / "work"
    work.mkdir(mode=0o700)
    os.chown(work, 65534, 65534)
    (work / "home").mkdir()
    os.chown(work / "home", 65534, 65534)
    await _fetch(repo, None, work / "src", Caps(1 << 30, 10_000, (65534, 65534)))
    assert {p.lstat().st_uid for p in [work / "src", *(work / "src").rglob("*")]} == {65534}
    private = repo_dir / "private"
    private.mkdir(mode=0o700)
    shutil.copytree(repo, private / "repo")
    with pytest.raises(BuildFailed, match="repository unreachable"):
        await _fetch(private / "repo", None, work / "src2", Caps(1 << 30, 10_000, (65534, 65534)))
