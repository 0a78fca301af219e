"""What differs between Postgres and Redis: how each runs, how it is reached, and when it is ready.

Both run like their official images (``postgres:16-alpine``, ``redis:7-alpine``) or the
platform's Debian-built equivalents: as the engine's own unprivileged user, with the data
directory on a named volume and the passwords from the environment. The engine's superuser
is the platform's; the tenant has a user of its own (db_roles.py). Readiness is judged
by speaking the engine's protocol, not by a bare TCP connect: Postgres must ask for
authentication (not answer "starting up"), Redis must accept the tenant's password and answer PING.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from ..errors import AgentHostError
from ..images.databases import PG_DATA
from ..models import DatabaseSpec, Engine
from .roles import redis_acl

__all__ = [
    "ENGINES",
    "EngineDef",
    "accepts_connections",
    "command_for",
    "connection_url",
    "env_for",
    "postgres_accepts",
    "postgres_name",
    "redis_accepts",
    "redis_user",
]


@dataclass(frozen=True)
class EngineDef:
    engine: Engine
    port: int
    data_path: str  # where the data volume is mounted
    user: str  # the engine's own user in both the official and the platform's image
    image_setting: str
    env_var: str  # the env var link_database sets by default
    scheme: str


ENGINES: dict[str, EngineDef] = {
    "postgres": EngineDef(
        "postgres", 5432, "/var/lib/postgresql/data", "postgres", "image_postgres", "DATABASE_URL", "postgresql"
    ),
    "redis": EngineDef("redis", 6379, "/data", "redis", "image_redis", "REDIS_URL", "redis"),
}

# The cluster lives one level below the mount: the official image declares the mount path a VOLUME,
# and dumps for backups sit beside the cluster on the same volume (DUMP_DIR).
PGDATA = PG_DATA  # where the image keeps its template, too
DUMP_DIR = "ah-dumps"
REDIS_ACL_FILE = "/tmp/users.acl"


# Role names Postgres reserves (public, none) or that are the platform's superuser (postgres).
_POSTGRES_TAKEN = {"postgres", "public", "none"}


def postgres_name(name: str) -> str:
    """The role and database name for a resource name: no '-' (it would need quoting everywhere),
    never the 'pg_' prefix Postgres reserves for its own roles, never the superuser's name."""
    ident = name.replace("-", "_")
    return f"db_{ident}" if ident.startswith("pg_") or ident in _POSTGRES_TAKEN else ident


def redis_user(name: str) -> str:
    """The tenant's Redis user for a resource name: anything but the platform's ``default``."""
    return f"db_{name}" if name == "default" else name


def env_for(engine: Engine, spec: DatabaseSpec, password: str, admin_password: str | None) -> dict[str, str]:
    """The engine's environment. ``admin_password`` is the superuser's (None for records made before
    tenant users, whose tenant user is the superuser).

    Raises: AgentHostError when a record with a superuser of its own has no password for it."""
    if spec.admin_user is not None and admin_password is None:
        # Never fall back to the old contract here: it would make the tenant's user the superuser.
        raise AgentHostError(f"the {engine} superuser's password is missing from the database's record")
    if engine == "postgres":
        env = {
            "POSTGRES_PASSWORD": password,
            "POSTGRES_USER": spec.username,
            "POSTGRES_DB": spec.db_name or spec.username,
            "PGDATA": PGDATA,
            # The root fs is read-only; the socket lives on the /tmp tmpfs (see command_for).
            "PGHOST": "/tmp",
        }
        if spec.admin_user is not None and admin_password is not None:
            # The cluster is initialised with only the superuser; its database "postgres" is the default.
            del env["POSTGRES_DB"]
            env.update(POSTGRES_USER=spec.admin_user, POSTGRES_PASSWORD=admin_password)
        return env
    if spec.admin_user is not None and admin_password is not None:
        return {"AH_REDIS_ACL": redis_acl(spec, password, admin_password)}
    return {"REDIS_PASSWORD": password}


def command_for(engine: Engine, spec: DatabaseSpec) -> list[str]:
    if engine == "postgres":
        shared_buffers = max(16, spec.memory_mb // 4)
        return [
            "postgres",
            "-c",
            "unix_socket_directories=/tmp",
            "-c",
            f"shared_buffers={shared_buffers}MB",
            "-c",
            "max_connections=100",
        ]
    # Through a shell so the passwords come from the environment, not the container's argv.
    maxmemory = max(8, spec.memory_mb * 3 // 4)
    start = 'exec redis-server --requirepass "$REDIS_PASSWORD"'
    if spec.admin_user is not None:
        acl = REDIS_ACL_FILE
        start = f"umask 077 && printf '%s\\n' \"$AH_REDIS_ACL\" > {acl} && exec redis-server --aclfile {acl}"
    return [
        "sh",
        "-c",
        f"{start} --dir /data --appendonly yes --appendfsync everysec"
        f" --maxmemory {maxmemory}mb --maxmemory-policy noeviction --protected-mode no",
    ]


def connection_url(engine: Engine, spec: DatabaseSpec, password: str, host: str, port: int) -> str:
    """Passwords are URL-safe by construction (token_urlsafe), so they need no escaping."""
    if engine == "postgres":
        return f"postgresql://{spec.username}:{password}@{host}:{port}/{spec.db_name}"
    return f"redis://{spec.username}:{password}@{host}:{port}/0"


# -- readiness probes ---------------------------------------------------------------------------


async def postgres_accepts(host: str, port: int, user: str, database: str, timeout_s: float = 2.0) -> bool:
    """True once the server asks for authentication; False while it starts, recovers or is unreachable."""
    params = f"user\0{user}\0database\0{database}\0\0".encode()
    body = (196608).to_bytes(4, "big") + params  # protocol 3.0
    packet = (len(body) + 4).to_bytes(4, "big") + body
    try:
        with anyio.fail_after(timeout_s):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(packet)
                first = await stream.receive(1)
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False
    return first == b"R"


async def redis_accepts(host: str, port: int, user: str, password: str, timeout_s: float = 2.0) -> bool:
    """True once the server accepts the password and answers PING (not while it loads its data)."""

    def command(*parts: str) -> bytes:
        out = f"*{len(parts)}\r\n".encode()
        for part in parts:
            raw = part.encode()
            out += f"${len(raw)}\r\n".encode() + raw + b"\r\n"
        return out

    try:
        with anyio.fail_after(timeout_s):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(command("AUTH", user, password) + command("PING"))
                answer = b""
                while answer.count(b"\r\n") < 2:
                    answer += await stream.receive(1024)
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False
    return answer.startswith(b"+OK\r\n+PONG\r\n")


async def accepts_connections(
    engine: Engine, spec: DatabaseSpec, password: str, host: str, port: int, timeout_s: float = 2.0
) -> bool:
    if engine == "postgres":
        if spec.admin_user is not None:  # the tenant's role may not exist yet
            return await postgres_accepts(host, port, spec.admin_user, "postgres", timeout_s)
        return await postgres_accepts(host, port, spec.username, spec.db_name or spec.username, timeout_s)
    return await redis_accepts(host, port, spec.username, password, timeout_s)
