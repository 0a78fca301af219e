"""`agenthost` — the operator's command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pydantic

from orchestrator.errors import AgentHostError
from orchestrator.images import RECIPES, build_images
from orchestrator.ingress import (
    MIGRATE_REQ,
    CaddyAdmin,
    IngressManager,
    caddy_command,
    clear_stale_socket,
    migrate_queued_connections,
)
from orchestrator.platform import Platform, host_egress
from orchestrator.ratelimit import RateLimiter
from orchestrator.secrets import SecretBox, load_master_key, write_master_key
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.store.snapshot import backup_control_plane
from orchestrator.tenants import TenantManager

__all__ = ["main"]


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if getattr(args, "toolsets", None):
        overrides["toolsets"] = args.toolsets
    return Settings(**overrides)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _json(value: object) -> None:
    _out(json.dumps(value, indent=2, default=str))


@asynccontextmanager
async def _tenants(settings: Settings) -> AsyncIterator[TenantManager]:
    """Tenants and keys live in the control-plane database only: these commands never reach the engine."""
    store = await Store.open(settings.db_path, SecretBox(load_master_key(settings.master_key_path)))
    try:
        yield TenantManager(settings, store)
    finally:
        await store.close()


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    data_dir = str(settings.data_dir.resolve())
    if settings.master_key_path.exists():
        if args.json:
            _json({"data_dir": data_dir, "already_initialised": True})
        else:
            _out(f"{settings.data_dir} is already initialised; nothing to do")
        return 0
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    write_master_key(settings.master_key_path)

    async def bootstrap() -> str | None:
        async with _tenants(settings) as tenants:
            key = await tenants.bootstrap()
            return key.key if key else None

    key = anyio.run(bootstrap)
    if args.json:
        _json({"data_dir": data_dir, "admin_key": key})
        return 0
    _out(f"initialised {data_dir}")
    if key:
        _out("\nadmin API key (shown once, store it now):\n")
        _out(f"  {key}\n")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from .app import build_http_app

    url = f"http://{args.host}:{args.port}"
    app = build_http_app(settings, public_url=url)
    logging.getLogger(__name__).info("agenthost serving MCP at %s/mcp and REST at %s/v1", url, url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", lifespan="on")
    return 0


def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    from .app import build_mcp
    from .state import AppState

    key = os.environ.get("AGENTHOST_API_KEY", "")
    refused: list[AgentHostError] = []

    async def serve() -> None:
        async with Platform.open(settings, background=True) as platform:
            try:
                await platform.tenants.authenticate(key)
            except AgentHostError as exc:
                refused.append(exc)  # raised out of here it would arrive wrapped in the platform's task group
                return
            state = AppState(platform=platform, limiter=RateLimiter(settings.rate_limit_per_minute), stdio_key=key)
            await build_mcp(lambda: state, read_only=settings.read_only).run_stdio_async()

    anyio.run(serve)
    for exc in refused:
        # One line: an MCP client shows a server's stderr as it is.
        hint = "set AGENTHOST_API_KEY to a key from `agenthost init` or `agenthost tenant create`"
        sys.stderr.write(f"agenthost mcp: [{exc.code}] {exc.message} (hint: {hint})\n")
        return 2
    return 0


def cmd_tenant(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        async with _tenants(settings) as tenants:
            if args.tenant_cmd == "create":
                tenant, key = await tenants.create_tenant(None, args.name)
                if args.json:
                    _json({"tenant": tenant.model_dump(mode="json"), "key": key.key})
                    return
                _out(f"created tenant {tenant.name} ({tenant.id})")
                _out(f"\nAPI key for {tenant.name} (shown once, store it now):\n\n  {key.key}\n")
                return
            everyone = await tenants.store.tenants.all()
            if args.json:
                _json([t.model_dump(mode="json") for t in everyone])
                return
            for t in everyone:
                _out(f"{t.name}\t{t.id}\t{t.created_at:%Y-%m-%d}")

    anyio.run(run)
    return 0


def cmd_images(settings: Settings, args: argparse.Namespace) -> int:
    results = build_images(settings, args.names or None, force=args.force, say=lambda s: _out(f"  {s}"))
    _out(", ".join(f"{name}: {state}" for name, state in results.items()))
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.platform import instance_id, make_backend

    problems = 0

    def check(ok: bool, what: str, fix: str = "", optional: bool = False) -> None:
        """One line; a failed check that is not ``optional`` makes the exit status 1."""
        nonlocal problems
        problems += not ok and not optional
        verdict = "ok  " if ok else "warn" if optional else "FAIL"
        _out(f"{verdict} {what}" + ("" if ok or not fix else f"  -> {fix}"))

    check(settings.master_key_path.exists(), f"data dir {settings.data_dir}", "run `agenthost init`")
    if settings.master_key_path.exists():
        check(settings.master_key_path.stat().st_mode & 0o077 == 0, "master key is private", "chmod 600 it")
    tools = {"debootstrap": "debootstrap", "restic": "restic", "iptables": "iptables", "git": "git"}
    for tool, package in {**tools, "iptables-restore": "iptables"}.items():
        check(shutil.which(tool) is not None, f"{tool} installed", f"apt-get install {package}")
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
                "install it and register it with the engine (docs/operations.md, section 'The runsc runtime')",
            )
            check(
                "sysbox-runc" in runtimes,
                'sysbox-runc present (only for workloads with runtime "sysbox": Docker-in-Docker)',
                "install Sysbox to offer it (docs/operations.md)",
                optional=True,
            )
            for name, recipe in RECIPES.items():
                tag = getattr(settings, recipe.setting)
                check(await backend.image_exists(tag), f"image {tag} ({name})", "run `agenthost images build`")
        except AgentHostError as exc:
            check(False, f"{backend.name} reachable: {exc.message}", exc.hint)
        finally:
            await backend.close()
        if settings.ingress:
            await ingress()

    async def ingress() -> None:
        check(shutil.which(settings.caddy_bin) is not None, f"{settings.caddy_bin} installed", "apt-get install caddy")
        try:
            running = await CaddyAdmin(settings.ingress_socket, timeout_s=3).config() or {}
            servers = running.get("apps", {}).get("http", {}).get("servers", {})
            check("agenthost" in servers, f"Caddy answers on {settings.ingress_socket} with agenthost's routes")
            if MIGRATE_REQ.exists():  # Linux 5.14 and later
                migrating = MIGRATE_REQ.read_text().strip() == "1"
                fix = "sysctl -w net.ipv4.tcp_migrate_req=1 (agenthost ingress run sets it when run as root)"
                check(migrating, "net.ipv4.tcp_migrate_req=1: a Caddy reload resets no client", fix)
        except AgentHostError as exc:
            check(False, f"Caddy (the HTTPS proxy): {exc.message}", exc.hint)

    anyio.run(engine)
    return 1 if problems else 0


def cmd_ingress(settings: Settings, args: argparse.Namespace) -> int:
    from orchestrator.platform import instance_id, make_backend

    async def rendered() -> dict[str, Any]:
        master = load_master_key(settings.master_key_path)
        store = await Store.open(settings.db_path, SecretBox(master))
        backend = make_backend(settings, instance_id(master))
        ingress = IngressManager(settings, store, backend)
        try:
            try:
                routes = await ingress.routes()
            except AgentHostError as exc:  # the engine is down: no routes now, the next sync brings them
                logging.getLogger(__name__).warning("starting Caddy without routes: %s", exc.message)
                routes = []
            return ingress.render(routes)
        finally:
            await backend.close()
            await store.close()

    config = anyio.run(rendered)
    if args.ingress_cmd == "config":
        _json(config)
        return 0
    clear_stale_socket(settings.ingress_socket)
    if (why := migrate_queued_connections()) is not None:
        logging.getLogger(__name__).warning(why)
    argv, env = caddy_command(settings, config)
    if shutil.which(argv[0]) is None:
        sys.stderr.write(f"error: {argv[0]} is not installed\nhint: apt-get install caddy\n")
        return 2
    os.execvpe(argv[0], argv, env)  # Caddy replaces this process: a supervisor (systemd, run.sh) sees Caddy itself


def cmd_egress(settings: Settings, args: argparse.Namespace) -> int:
    egress = host_egress(settings)
    if args.egress_cmd == "show":
        _out(egress.describe())
        return 0
    changed = egress.apply()
    _out("egress rules installed" if changed else "egress rules already in place")
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
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
    "egress": cmd_egress,
    "ingress": cmd_ingress,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agenthost", description="A self-hosted platform that AI agents operate.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="default ./agenthost-data (env AGENTHOST_DATA_DIR)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts instead of prose")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", parents=[common, as_json], help="create the data dir, master key and first admin key")
    serve = sub.add_parser("serve", parents=[common], help="serve MCP (/mcp) and REST (/v1) over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    toolsets_help = "toolsets offered when a request names none, e.g. services,builds or all (env AGENTHOST_TOOLSETS)"
    serve.add_argument("--toolsets", help=toolsets_help)
    mcp = sub.add_parser("mcp", parents=[common], help="serve MCP over stdio (key from AGENTHOST_API_KEY)")
    mcp.add_argument("--toolsets", help=toolsets_help.replace("when a request names none", "to this session"))
    tenant = sub.add_parser("tenant", parents=[common], help="manage tenants")
    tsub = tenant.add_subparsers(dest="tenant_cmd", required=True)
    tcreate = tsub.add_parser("create", parents=[common, as_json], help="create a tenant and print its first key")
    tcreate.add_argument("name")
    tsub.add_parser("list", parents=[common, as_json], help="list tenants: name, id, creation date")
    images = sub.add_parser("images", parents=[common], help="the platform's local images")
    isub = images.add_subparsers(dest="images_cmd", required=True)
    ibuild = isub.add_parser("build", parents=[common], help="build them from Debian packages (debootstrap)")
    ibuild.add_argument("names", nargs="*", help=f"subset of: {', '.join(RECIPES)}")
    ibuild.add_argument("--force", action="store_true")
    sub.add_parser("doctor", parents=[common], help="check the host")
    backup = sub.add_parser("backup", parents=[common], help="consistent copy of the control-plane database")
    backup.add_argument("--keep", type=int, default=7, help="how many copies to keep")
    egress = sub.add_parser("egress", parents=[common], help="the host's egress rules (iptables)")
    esub = egress.add_subparsers(dest="egress_cmd", required=True)
    esub.add_parser(
        "apply", parents=[common], help="install or update them now (a Nomad client node needs this at every boot)"
    )
    esub.add_parser("show", parents=[common], help="print the rules this host would get, as iptables-restore input")
    ingress = sub.add_parser("ingress", parents=[common], help="the HTTPS proxy (Caddy) in front of services")
    isub2 = ingress.add_subparsers(dest="ingress_cmd", required=True)
    isub2.add_parser("run", parents=[common], help="run Caddy in the foreground with its files in the data dir")
    isub2.add_parser("config", parents=[common], help="print the configuration Caddy should run now (JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # readiness probes would flood the log
    try:
        settings = _settings(args)
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            name = "AGENTHOST_" + str(err["loc"][0]).upper() if err["loc"] else "a setting"
            sys.stderr.write(f"error: {name}: {err['msg'].removeprefix('Value error, ')}\n")
        sys.stderr.write("hint: fix the setting (environment variable) and run the command again\n")
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except AgentHostError as exc:
        sys.stderr.write(f"error: {exc.message}\nhint: {exc.hint}\n")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
