"""What differs between Postgres and Redis: how each runs, how it is reached, and when it is ready.

Both run like their official images (``postgres:16-alpine``, ``redis:7-alpine``) or the
platform's Debian-built equivalents: as the engine's own unprivileged user, with the data
directory on a named volume and the password from the environment. Readiness is judged
by speaking the engine's protocol, not by a bare TCP connect: Postgres must ask for
authentication (not answer "starting up"), Redis must accept the password and answer PING.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from .models import DatabaseSpec, Engine

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
PGDATA = "/var/lib/postgresql/data/pgdata"
DUMP_DIR = "ah-dumps"


def postgres_name(name: str) -> str:
    """The role and database name for a resource name: no '-' (it would need quoting everywhere),
    and never the 'pg_' prefix Postgres reserves for its own roles."""
    ident = name.replace("-", "_")
    return f"db_{ident}" if ident.startswith("pg_") else ident


def env_for(engine: Engine, spec: DatabaseSpec, password: str) -> dict[str, str]:
    if engine == "postgres":
        return {
            "POSTGRES_PASSWORD": password,
            "POSTGRES_USER": spec.username,
            "POSTGRES_DB": spec.db_name or spec.username,
            "PGDATA": PGDATA,
            # The root fs is read-only; the socket lives on the /tmp tmpfs (see command_for).
            "PGHOST": "/tmp",
        }
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
    # Through a shell so the password comes from the environment, not the container's argv.
    maxmemory = max(8, spec.memory_mb * 3 // 4)
    return [
        "sh",
        "-c",
        'exec redis-server --requirepass "$REDIS_PASSWORD" --dir /data --appendonly yes --appendfsync everysec'
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
        return await postgres_accepts(host, port, spec.username, spec.db_name or spec.username, timeout_s)
    return await redis_accepts(host, port, spec.username, password, timeout_s)
