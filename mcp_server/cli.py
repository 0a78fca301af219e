"""`agenthost` — the operator's command line."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from orchestrator.controlplane_backup import backup_control_plane
from orchestrator.errors import AgentHostError
from orchestrator.images import RECIPES, build_images
from orchestrator.platform import Platform
from orchestrator.ratelimit import RateLimiter
from orchestrator.secrets import write_master_key
from orchestrator.settings import Settings
from orchestrator.store import Store

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    return Settings(**overrides)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    if settings.master_key_path.exists():
        _out(f"{settings.data_dir} is already initialised; nothing to do")
        return 0
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    write_master_key(settings.master_key_path)

    async def bootstrap() -> str | None:
        async with Platform.open(settings) as platform:
            key = await platform.tenants.bootstrap()
            return key.key if key else None

    key = anyio.run(bootstrap)
    _out(f"initialised {settings.data_dir.resolve()}")
    if key:
        _out("\nadmin API key (shown once, store it now):\n")
        _out(f"  {key}\n")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .app import build_http_app

    app = build_http_app(settings)
    url = f"http://{args.host}:{args.port}"
    logging.getLogger(__name__).info("agenthost serving MCP at %s/mcp and REST at %s/v1", url, url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="on")
    return 0


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from .app import AppState, build_mcp

    key = os.environ.get("AGENTHOST_API_KEY", "")

    async def serve() -> None:
        async with Platform.open(settings, background=True) as platform:
            try:
                principal = await platform.tenants.authenticate(key)
            except AgentHostError as exc:
                raise AgentHostError(
                    f"agenthost mcp: {exc.message}",
                    "set AGENTHOST_API_KEY to a key from `agenthost init` or `tenant create`",
                ) from exc
            state = AppState(
                platform=platform, limiter=RateLimiter(settings.rate_limit_per_minute), stdio_principal=principal
            )
            await build_mcp(lambda: state, read_only=settings.read_only).run_stdio_async()

    anyio.run(serve)
    return 0


def cmd_tenant(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        async with Platform.open(settings) as platform:
            if args.tenant_cmd == "create":
                tenant, key = await platform.tenants.create_tenant(None, args.name)
                _out(f"created tenant {tenant.name} ({tenant.id})")
                _out(f"\nAPI key for {tenant.name} (shown once, store it now):\n\n  {key.key}\n")
            else:
                for t in await platform.store.tenants.all():
                    _out(f"{t.name}\t{t.id}\t{t.created_at:%Y-%m-%d}")

    anyio.run(run)
    return 0


def cmd_images(settings: Settings, args: argparse.Namespace) -> int:
    results = build_images(settings, args.names or None, force=args.force, say=lambda s: _out(f"  {s}"))
    _out(", ".join(f"{name}: {state}" for name, state in results.items()))
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.platform import instance_id, make_backend
    from orchestrator.secrets import load_master_key

    problems = 0

    def check(ok: bool, what: str, fix: str = "") -> None:
        nonlocal problems
        problems += not ok
        _out(f"{'ok  ' if ok else 'FAIL'} {what}" + ("" if ok or not fix else f"  -> {fix}"))

    check(settings.master_key_path.exists(), f"data dir {settings.data_dir}", "run `agenthost init`")
    if settings.master_key_path.exists():
        check(settings.master_key_path.stat().st_mode & 0o077 == 0, "master key is private", "chmod 600 it")
    for tool in ("debootstrap", "restic", "iptables", "git"):
        check(shutil.which(tool) is not None, f"{tool} installed", f"apt-get install {tool}")
    if settings.registry:
        import httpx

        try:
            ok = httpx.get(f"http://{settings.registry}/v2/", timeout=3).status_code == 200
        except httpx.HTTPError:
            ok = False
        check(ok, f"image registry at {settings.registry} (builds push there)", "run infra/registry.sh")

    async def engine() -> None:
        instance = (
            instance_id(load_master_key(settings.master_key_path)) if settings.master_key_path.exists() else "doctor"
        )
        backend = make_backend(settings, instance)
        try:
            info = await backend.info()
            check(True, f"{backend.name} {info.version} reachable")
            runtimes = await backend.runtimes()
            check(
                settings.default_runtime in runtimes,
                f"default runtime {settings.default_runtime} present",
                "install it and register it with the engine (DESIGN.md section 3)",
            )
            check("sysbox-runc" in runtimes, "sysbox-runc present (only needed for Docker-in-Docker)")
            for name, recipe in RECIPES.items():
                tag = getattr(settings, recipe.setting)
                check(await backend.image_exists(tag), f"image {tag} ({name})", "run `agenthost images build`")
        except AgentHostError as exc:
            check(False, f"{backend.name} reachable: {exc.message}", exc.hint)
        finally:
            await backend.close()

    anyio.run(engine)
    return 1 if problems else 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.secrets import SecretBox, load_master_key

    async def run() -> Path:
        store = await Store.open(settings.db_path, SecretBox(load_master_key(settings.master_key_path)))
        try:
            return await backup_control_plane(store.db, settings.data_dir / "backups", keep=args.keep)
        finally:
            await store.close()

    _out(f"wrote {anyio.run(run)}")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "init": cmd_init,
    "serve": cmd_serve,
    "mcp": cmd_mcp,
    "tenant": cmd_tenant,
    "images": cmd_images,
    "doctor": cmd_doctor,
    "backup": cmd_backup,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agenthost", description="A self-hosted platform that AI agents operate.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="default ./agenthost-data (env AGENTHOST_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", parents=[common], help="create the data dir, master key and first admin key")
    serve = sub.add_parser("serve", parents=[common], help="serve MCP (/mcp) and REST (/v1) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    sub.add_parser("mcp", parents=[common], help="serve MCP over stdio (key from AGENTHOST_API_KEY)")
    tenant = sub.add_parser("tenant", parents=[common], help="manage tenants")
    tsub = tenant.add_subparsers(dest="tenant_cmd", required=True)
    tcreate = tsub.add_parser("create", parents=[common], help="create a tenant and print its first key")
    tcreate.add_argument("name")
    tsub.add_parser("list", parents=[common])
    images = sub.add_parser("images", parents=[common], help="the platform's local images")
    isub = images.add_subparsers(dest="images_cmd", required=True)
    ibuild = isub.add_parser("build", parents=[common], help="build them from Debian packages (debootstrap)")
    ibuild.add_argument("names", nargs="*", help=f"subset of: {', '.join(RECIPES)}")
    ibuild.add_argument("--force", action="store_true")
    sub.add_parser("doctor", parents=[common], help="check the host")
    backup = sub.add_parser("backup", parents=[common], help="consistent copy of the control-plane database")
    backup.add_argument("--keep", type=int, default=7, help="how many copies to keep")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness probes would flood the log
    try:
        return COMMANDS[args.command](_settings(args), args)
    except AgentHostError as exc:
        sys.stderr.write(f"error: {exc.message}\nhint: {exc.hint}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
