"""Fetch one commit of a validated git source into a fresh directory, with git hardened for untrusted repos.

git runs on the control-plane host as a child process, so it is fenced in: as an unprivileged
uid/gid with no supplementary groups (when agenthost runs as root) in a directory that uid owns, no
system or user git config (no credential helpers, no operator identity), no hooks, no prompts, no
redirects, no background gc, only the transports the source needs, the host's checked addresses
pinned, submodules and LFS ignored, a size and a file-count cap watched while it fetches, and its
whole process group killed when the build stops.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

from ..errors import AgentHostError, BuildFailed, InvalidInput
from .sources import GitSource, check_addresses, check_ref

__all__ = ["Caps", "Fetched", "check_tree", "fetch_source", "resolve_ref", "tree_stats"]

LogFn = Callable[[str], Awaitable[None]]
_SHA = re.compile(r"[0-9a-f]{4,40}")


@dataclass(frozen=True)
class Fetched:
    commit: str
    ref: str  # the ref that was resolved ('HEAD' for the default branch)


def tree_stats(path: Path) -> tuple[int, int]:
    """Bytes and entries (files, directories, links) under ``path``, symlinks not followed."""
    total = count = 0
    for root, dirs, files in os.walk(path):
        count += len(files) + len(dirs)
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total, count


def _git_env(home: Path, allow_local: bool, config: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": config,
        "GIT_ALLOW_PROTOCOL": "https:http:file" if allow_local else "https",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        if proxy in os.environ:
            env[proxy] = os.environ[proxy]
    return env


_CONFIG = [
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "credential.helper=",
    "http.followRedirects=false",
    "http.lowSpeedLimit=1024",
    "http.lowSpeedTime=60",
    "gc.auto=0",
    "maintenance.auto=false",
    "submodule.recurse=false",
    "advice.detachedHead=false",
    "init.defaultBranch=main",
]


@dataclass(frozen=True)
class Caps:
    """How much a checkout may hold, and the uid/gid git runs as (None: agenthost's own)."""

    max_bytes: int
    max_files: int
    run_as: tuple[int, int] | None = None


class _Git:
    def __init__(self, env: dict[str, str], pins: list[str], log: LogFn, caps: Caps) -> None:
        self.env = env
        self.config = [*_CONFIG, *(f"http.curloptResolve={pin}" for pin in pins)]
        self.log = log
        self.caps = caps

    async def run(
        self, *args: str, cwd: Path | None = None, watch: Path | None = None, echo: bool = True
    ) -> tuple[int, str]:
        """Run git; returns (exit code, output). With ``echo`` its output lines go to the build log too."""
        argv = ["git"]
        for item in self.config:
            argv += ["-c", item]
        argv += list(args)
        uid, gid = self.caps.run_as or (None, None)
        proc = await anyio.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
            umask=0o022,
        )
        output: list[str] = []
        too_big: BuildFailed | None = None
        try:
            async with anyio.create_task_group() as tg:
                if watch is not None:

                    async def watcher() -> None:
                        nonlocal too_big
                        while True:
                            await anyio.sleep(1.0)
                            too_big = _over(*await anyio.to_thread.run_sync(tree_stats, watch), self.caps)
                            if too_big is not None:
                                _kill(proc)
                                return

                    tg.start_soon(watcher)
                assert proc.stdout is not None
                buffer = b""
                async for chunk in proc.stdout:
                    buffer += chunk
                    *lines, buffer = re.split(rb"[\r\n]", buffer)
                    for raw in lines:
                        if line := raw.decode("utf-8", "replace").strip():
                            output.append(line)
                            if echo:
                                await self.log(line)
                if tail := buffer.decode("utf-8", "replace").strip():
                    output.append(tail)
                    if echo:
                        await self.log(tail)
                code = await proc.wait()
                tg.cancel_scope.cancel()
        finally:
            if proc.returncode is None:
                _kill(proc)
                with anyio.CancelScope(shield=True):
                    await proc.wait()
        if too_big is not None:
            raise too_big
        return code, "\n".join(output)


def check_tree(path: Path, caps: Caps) -> None:
    """Raises: BuildFailed when the tree at ``path`` is over the size or file-count cap."""
    if (over := _over(*tree_stats(path), caps)) is not None:
        raise over


def _over(size: int, files: int, caps: Caps) -> BuildFailed | None:
    if size > caps.max_bytes:
        return BuildFailed(
            f"the repository is larger than the limit of {caps.max_bytes / (1024 * 1024):g} MiB",
            "make the repository smaller (no build artefacts or large binaries), or ask the operator",
        )
    if files > caps.max_files:
        return BuildFailed(
            f"the repository has more than the limit of {caps.max_files} files (git's own objects count while "
            "it fetches)",
            "keep generated files and vendored dependencies out of the repository, or ask the operator",
        )
    return None


def _kill(proc: anyio.abc.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _pins(src: GitSource, allow_private: bool) -> list[str]:
    if src.host is None or src.port is None:
        return []
    try:
        infos = await anyio.getaddrinfo(src.host, src.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BuildFailed(
            f"repository unreachable: cannot resolve {src.host} ({exc})", "check the git_url and that the host exists"
        ) from exc
    addresses = sorted({str(info[4][0]) for info in infos})
    try:
        check_addresses(src.host, addresses, allow_private, allow_loopback=src.loopback)
    except InvalidInput as exc:
        raise BuildFailed(exc.message, exc.hint) from exc
    joined = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
    return [f"{src.host}:{src.port}:{joined}"]


def resolve_ref(listing: str, ref: str | None) -> tuple[str, str | None]:
    """Find ``ref`` in ``git ls-remote --symref`` output. Returns (what to fetch, commit if known).

    A branch, tag or full ref name is looked up; a hex string is taken as a commit (prefix) and
    matched against advertised commits or fetched directly. Raises: BuildFailed for an unknown ref.
    """
    refs: dict[str, str] = {}
    for line in listing.splitlines():
        sha, _, name = line.partition("\t")
        if sha.startswith("ref:") or not name:
            continue
        refs[name] = sha
    if ref is None or ref == "HEAD":
        if "HEAD" not in refs:
            raise BuildFailed("the repository has no default branch (empty repository?)", "push a commit, or pass ref")
        return "HEAD", refs["HEAD"]
    for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if candidate in refs:
            return candidate, refs.get(f"{candidate}^{{}}", refs[candidate])
    if _SHA.fullmatch(ref):
        matches = {sha for name, sha in refs.items() if sha.startswith(ref)}
        if len(matches) == 1:
            sha = matches.pop()
            return sha, sha
        return ref, None
    branches = sorted(n.removeprefix("refs/heads/") for n in refs if n.startswith("refs/heads/"))
    tags = sorted({n.removeprefix("refs/tags/").removesuffix("^{}") for n in refs if n.startswith("refs/tags/")})
    known = ", ".join(branches[:10]) or "none"
    raise BuildFailed(
        f"unknown ref {ref!r}: branches are {known}" + (f"; tags are {', '.join(tags[:10])}" if tags else ""),
        "pass an existing branch, tag or commit as ref (omit it for the default branch)",
    )


async def fetch_source(
    src: GitSource,
    ref: str | None,
    dest: Path,
    home: Path,
    log: LogFn,
    *,
    allow_local: bool,
    allow_private: bool,
    caps: Caps,
) -> Fetched:
    """Check out the commit ``ref`` names into ``dest`` (git creates it) and drop its ``.git``.

    ``home`` and the parent of ``dest`` must be writable by ``caps.run_as``.
    Raises: BuildFailed (unreachable repository, unknown ref, over the size or file-count limit).
    """
    if ref is not None:
        try:
            check_ref(ref)
        except InvalidInput as exc:
            raise BuildFailed(exc.message, exc.hint) from exc
    pins = await _pins(src, allow_private)
    with _global_config(src) as config:
        git = _Git(_git_env(home, allow_local, config), pins, log, caps)
        return await _fetch(git, src, ref, dest, log, caps)


@contextmanager
def _global_config(src: GitSource) -> Iterator[str]:
    """No global git config, except for a local source: it is the operator's, owned by another uid than
    git's, and git (before 2.45) takes ``safe.directory`` from a global config file only."""
    if src.kind != "local":
        yield "/dev/null"
        return
    path = unquote(urlsplit(src.url).path)
    fd, name = tempfile.mkstemp(prefix="agenthost-git-", suffix=".config")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"[safe]\n\tdirectory = {path}\n\tdirectory = {path}/.git\n")
        os.chmod(name, 0o644)
        yield name
    finally:
        os.unlink(name)


async def _fetch(git: _Git, src: GitSource, ref: str | None, dest: Path, log: LogFn, caps: Caps) -> Fetched:
    # git runs as the build user, who may not reach the control plane's working directory (a root started
    # from /root, mode 0700): git then fails on its own cwd. It runs in the checkout's parent, theirs to reach.
    dest = dest.absolute()
    await log(f"[agenthost] git ls-remote {src.url}")
    code, listing = await git.run("ls-remote", "--symref", "--", src.url, cwd=dest.parent, echo=False)
    if code != 0:
        await log(listing.strip()[-2000:])
        last = listing.strip().splitlines()[-1] if listing.strip() else f"git exited with {code}"
        raise BuildFailed(f"repository unreachable: {last}", "check git_url: the repository must exist and be public")
    want, commit = resolve_ref(listing, ref)
    code, out = await git.run("init", "-q", str(dest), cwd=dest.parent, echo=False)
    if code != 0:
        raise AgentHostError(f"git could not make the checkout directory: {out.strip()[-300:]}")
    await log(f"[agenthost] fetching {want if want == commit or commit is None else f'{want} ({commit[:12]})'}")
    code, _ = await git.run("fetch", "-q", "--depth", "1", "--no-tags", "--", src.url, want, cwd=dest, watch=dest)
    if code != 0:
        # Dumb http cannot fetch shallow, and some servers refuse unadvertised commits: take everything.
        await log("[agenthost] shallow fetch failed; fetching the full history")
        spec = want if commit is not None else "+refs/*:refs/remotes/all/*"
        code, out = await git.run("fetch", "-q", "--no-tags", "--", src.url, spec, cwd=dest, watch=dest)
        if code != 0:
            raise BuildFailed(f"fetching {want} failed: {out.strip()[-300:]}", "check that the ref exists")
    target = "FETCH_HEAD^{commit}" if commit is not None else f"{want}^{{commit}}"
    code, out = await git.run("rev-parse", "--verify", "--quiet", target, cwd=dest, echo=False)
    if code != 0:
        raise BuildFailed(
            f"unknown ref {ref!r}: no branch, tag or commit of that name",
            "pass an existing branch, tag or commit as ref (omit it for the default branch)",
        )
    resolved = out.strip().splitlines()[-1]
    code, out = await git.run("checkout", "-q", "--detach", resolved, cwd=dest, watch=dest)
    if code != 0:
        raise BuildFailed(f"checking out {resolved[:12]} failed: {out.strip()[-300:]}")
    await anyio.to_thread.run_sync(_drop_git_dir, dest)
    await anyio.to_thread.run_sync(check_tree, dest, caps)
    return Fetched(commit=resolved, ref=want)


def _drop_git_dir(dest: Path) -> None:
    shutil.rmtree(dest / ".git", ignore_errors=True)
