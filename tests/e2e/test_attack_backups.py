"""A tenant's attacks on backups and restores, through the MCP client: root must never follow a link the
tenant planted (or swaps in during the operation) to read, write or delete outside the tenant's volume."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import docker
import pytest

from .harness import AgentHost, ToolFailed, call, connect, until

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

Tree = dict[str, tuple[Any, ...]]


def _tree(root: Path) -> Tree:
    """Every entry under root as the host sees it, links never followed: kind, owner, mode, mtime, content."""
    st = root.lstat()
    out: Tree = {".": ("dir", st.st_uid, st.st_gid, st.st_mode & 0o7777)}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, data = "link", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, data = "dir", ""
            else:
                kind, data = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (kind, st.st_uid, st.st_gid, st.st_mode & 0o7777, st.st_mtime_ns, data)
    return out


def _host_dir(tmp_path: Path) -> tuple[Path, Tree]:
    """A root-owned directory of the host the tenant aims at, and what it holds."""
    target = tmp_path / "host-dir"
    (target / "sub").mkdir(parents=True)
    (target / "keep.txt").write_text("host data\n")
    (target / "blob.bin").write_text("host blob\n")
    (target / "sub" / "note.txt").write_text("host note\n")
    return target, _tree(target)


def _mount(docker_client: docker.DockerClient, host: AgentHost, tenant: str, volume: str) -> Path:
    return Path(docker_client.volumes.get(f"ah-{host.tenant_ids[tenant]}-{volume}").attrs["Mountpoint"])


def _files_service(host: AgentHost, name: str, volume: str, command: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": host.settings.image_python,
        "command": command or ["sleep", "infinity"],
        "volumes": [{"name": volume, "path": "/app"}],
    }


async def _exec(client: Any, service: str, script: str) -> None:
    out = await call(client, "exec", {"service": service, "command": script, "timeout_s": 300})
    assert out["exit_code"] == 0, out


async def _restore_done(client: Any, volume: str, backup_id: str) -> dict[str, Any]:
    def ended(listed: dict[str, Any]) -> bool:
        found = [b for b in listed["backups"] if b["id"] == backup_id]
        return bool(found) and found[0]["last_restore"] is not None and found[0]["last_restore"]["status"] != "running"

    listed = await until(client, "list_backups", {"volume": volume}, ended, timeout=300)
    last: dict[str, Any] = next(b for b in listed["backups"] if b["id"] == backup_id)["last_restore"]
    return last


def _many_files(mount: Path) -> None:
    """10,000 small files in 20 directories, so that a restore is still at work while the tenant races it. The
    test writes them into the volume from the host, owned as the tenant's service would own them: the service
    itself takes half a minute for as many under gVisor."""
    owner = mount.stat()
    for i in range(20):
        directory = mount / f"d{i}"
        directory.mkdir()
        os.chown(directory, owner.st_uid, owner.st_gid)
        for j in range(500):
            path = directory / f"f{j}"
            path.write_text(str(i * j))
            os.chown(path, owner.st_uid, owner.st_gid)


# Whatever directory a restore stages inside the volume, and every directory it restores, is swapped for a
# link to the host directory as soon as it appears.
SWAPPER = (
    'while true; do for d in /app/.ah-restore-* /app/d*; do if [ -d "$d" ] && [ ! -L "$d" ]; then'
    ' rm -rf "$d"; ln -s "$AH_TARGET" "$d"; fi; done; done'
)


@pytest.mark.parametrize("into", [None, "copy"], ids=["existing-volume", "new-volume"])
async def test_attack_racing_a_restore_with_a_second_service_cannot_redirect_root(
    agenthost: AgentHost, docker_client: docker.DockerClient, tmp_path: Path, into: str | None
) -> None:
    target, before = _host_dir(tmp_path)
    tenant = f"atk-race-{into or 'data'}"
    key = agenthost.tenant(tenant)
    async with connect(agenthost, key, "stdio") as client:
        await call(client, "deploy_service", _files_service(agenthost, "files", "data"))
        mount = _mount(docker_client, agenthost, tenant, "data")
        _many_files(mount)
        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup
        snapshot = _tree(mount)
        await _exec(client, "files", "rm -rf /app/d0 && echo junk > /app/junk")

        args = {"backup_id": backup["id"], "confirm": True, "wait": False} | ({"name": into} if into else {})
        restoring = await call(client, "restore_backup", args)
        assert restoring["last_restore"]["status"] == "running", restoring
        volume = into or "data"
        racer = _files_service(agenthost, "racer", volume, ["sh", "-c", SWAPPER.replace("$AH_TARGET", str(target))])
        try:
            deployed: dict[str, Any] | ToolFailed = await call(client, "deploy_service", {**racer, "wait": False})
        except ToolFailed as exc:
            deployed = exc
        last = await _restore_done(client, "data", backup["id"])

        assert _tree(target) == before, "root wrote into or removed from a host directory the tenant chose"
        assert isinstance(deployed, ToolFailed), f"a service was deployed on a volume being restored: {deployed}"
        assert deployed.code == "conflict" and f"volume {volume}" in deployed.message, deployed
        assert "list_backups" in deployed.message, deployed
        assert last["status"] == "complete", last
        assert _tree(_mount(docker_client, agenthost, tenant, volume)) == snapshot
        services = (await call(client, "list_services"))["services"]
        assert [s["name"] for s in services] == ["files"]
        await call(client, "delete_service", {"service": "files", "confirm": True})
    if into:
        docker_client.volumes.get(f"ah-{agenthost.tenant_ids[tenant]}-{into}").remove()


async def test_attack_links_planted_in_a_volume_never_make_root_read_write_or_delete_outside_it(
    agenthost: AgentHost, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    target, before = _host_dir(tmp_path)
    key = agenthost.tenant("atk-links")
    async with connect(agenthost, key, "http") as client:
        await call(client, "deploy_service", _files_service(agenthost, "files", "data"))
        await _exec(
            client,
            "files",
            "mkdir /app/sub && echo mine > /app/sub/note.txt && echo blob > /app/blob.bin && echo k > /app/keep.txt",
        )
        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup
        mount = _mount(docker_client, agenthost, "atk-links", "data")
        snapshot = _tree(mount)

        # Every name the restore writes, and the names it used to stage at, now lead to the host directory.
        await _exec(
            client,
            "files",
            f"rm -rf /app/sub /app/blob.bin /app/keep.txt && ln -s {target} /app/sub"
            f" && ln -s {target}/blob.bin /app/blob.bin && ln -s {target}/keep.txt /app/keep.txt"
            f" && ln -s {target} /app/ah-dumps && ln -s {target} /app/.ah-restore-{backup['id']}",
        )
        planted = _tree(mount)
        # A backup stores the links as links: the host's files never reach the tenant's snapshot.
        linked = await call(client, "create_backup", {"volume": "data"})
        assert linked["status"] == "complete", linked
        copy = await call(client, "restore_backup", {"backup_id": linked["id"], "name": "copy"})
        assert copy["last_restore"]["status"] == "complete", copy["last_restore"]
        copied = _tree(_mount(docker_client, agenthost, "atk-links", "copy"))
        assert {k: v[0] for k, v in copied.items()} == {k: v[0] for k, v in planted.items()}
        assert copied["sub"][-1] == str(target) and copied["blob.bin"][-1] == f"{target}/blob.bin"

        restored = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True})
        assert restored["last_restore"]["status"] == "complete", restored["last_restore"]

        assert _tree(target) == before, "root wrote into or removed from a host directory the tenant chose"
        assert _tree(mount) == snapshot
        await call(client, "delete_service", {"service": "files", "confirm": True})
    docker_client.volumes.get(f"ah-{agenthost.tenant_ids['atk-links']}-copy").remove()


async def test_attack_a_volume_under_restore_refuses_every_way_to_run_on_it(
    agenthost: AgentHost, docker_client: docker.DockerClient
) -> None:
    key = agenthost.tenant("atk-lock")
    async with connect(agenthost, key, "stdio") as client:
        await call(client, "deploy_service", _files_service(agenthost, "files", "data"))
        mount = _mount(docker_client, agenthost, "atk-lock", "data")
        _many_files(mount)  # the restore lasts past the calls below
        backup = await call(client, "create_backup", {"volume": "data"})
        assert backup["status"] == "complete", backup
        snapshot = _tree(mount)
        restoring = await call(client, "restore_backup", {"backup_id": backup["id"], "confirm": True, "wait": False})
        assert restoring["last_restore"]["status"] == "running", restoring

        refused: dict[str, ToolFailed | dict[str, Any]] = {}
        for tool, args in (
            ("start_service", {"service": "files"}),
            ("restart_service", {"service": "files"}),
            ("update_service", {"service": "files", "env": {"X": "1"}}),
            ("exec", {"service": "files", "command": "touch /app/sneaked-in"}),
            ("delete_service", {"service": "files", "confirm": True}),
        ):
            try:
                refused[tool] = await call(client, tool, args)
            except ToolFailed as exc:
                refused[tool] = exc
        # Every call above was made while the restore held the volume.
        listed = await call(client, "list_backups", {"volume": "data"})
        assert listed["backups"][0]["last_restore"]["status"] == "running", listed
        for tool, outcome in refused.items():
            assert isinstance(outcome, ToolFailed), f"{tool} went through during the restore: {outcome}"
            assert outcome.code == "conflict" and "volume data" in outcome.message, (tool, outcome)

        last = await _restore_done(client, "data", backup["id"])
        assert last["status"] == "complete", last
        assert _tree(mount) == snapshot
        svc = await until(client, "get_service", {"service": "files"}, lambda s: s["status"] == "running")
        assert svc["env_keys"] == []  # the refused update changed nothing
        await call(client, "delete_service", {"service": "files", "confirm": True})
