"""What a caller asks of a service: the deploy and update requests, and the checks of the env they carry."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import InvalidInput, RuntimeUnavailable
from ..models import Egress, HealthCheck, ResourceName, VolumeMount
from ..settings import Settings

__all__ = [
    "DeployRequest",
    "UpdateRequest",
    "check_command",
    "check_env",
    "check_env_key",
    "logs_since",
    "resolve_runtime",
]

_RUNTIME_ALIASES = {"gvisor": "runsc", "sysbox": "sysbox-runc"}

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")  # fullmatch: a $ would let a trailing newline in
_MAX_ENV_VALUE = 32 * 1024


class DeployRequest(BaseModel):
    name: ResourceName
    image: str | None = Field(None, min_length=1, max_length=256)
    build_id: str | None = Field(None, min_length=1, max_length=64)
    port: int | None = Field(None, ge=1, le=65535)
    env: dict[str, str] = {}
    command: list[str] | None = None
    memory_mb: int | None = Field(None, ge=16, le=65536)
    cpus: float | None = Field(None, gt=0, le=64)
    volumes: list[VolumeMount] = []
    runtime: str | None = None
    health_check: HealthCheck = HealthCheck()
    egress: Egress = "open"
    user: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?$")
    ssh_public_key: str | None = Field(None, max_length=16384)
    public: bool = True
    wait: bool = True
    wait_timeout_s: float | None = Field(None, gt=0, le=600)


class UpdateRequest(BaseModel):
    image: str | None = Field(None, min_length=1, max_length=256)
    build_id: str | None = Field(None, min_length=1, max_length=64)
    port: int | None = Field(None, ge=1, le=65535)
    command: list[str] | None = Field(None, min_length=1)
    memory_mb: int | None = Field(None, ge=16, le=65536)
    cpus: float | None = Field(None, gt=0, le=64)
    runtime: str | None = None
    health_check: HealthCheck | None = None
    egress: Egress | None = None
    env: dict[str, str] | None = None
    unset_env: list[str] | None = None
    public: bool | None = None
    wait: bool = True


def check_command(command: list[str] | None) -> None:
    """Raises: InvalidInput for an empty argv, a NUL byte (no argv can hold one) or more than 128 KiB."""
    if command is None:
        return
    if not command:
        raise InvalidInput("command is an empty list", "omit it to use the image's own command")
    size = sum(len(arg.encode("utf-8", "replace")) for arg in command)
    if any("\x00" in arg for arg in command) or size > 128 * 1024:
        raise InvalidInput("command holds a NUL byte or is larger than 128 KiB", "put big scripts in the image")


def check_env_key(key: str) -> None:
    """Raises: InvalidInput for a malformed name or one with the reserved AGENTHOST_ prefix."""
    if not _ENV_KEY.fullmatch(key):
        raise InvalidInput(
            f"invalid env var name {key!r}", "names are letters, digits and '_', not starting with a digit"
        )
    if key.startswith("AGENTHOST_"):
        raise InvalidInput(f"env var {key!r} uses the reserved AGENTHOST_ prefix", "rename it")


def check_env(values: dict[str, str]) -> None:
    """Raises: InvalidInput for a name ``check_env_key`` refuses, or a value holding a NUL byte or larger than
    32 KiB (UTF-8)."""
    for key, value in values.items():
        check_env_key(key)
        try:
            size = len(value.encode())
        except UnicodeEncodeError:  # a lone surrogate: no text at all
            size = -1
        if "\x00" in value or size < 0:
            raise InvalidInput(
                f"env var {key!r} holds a NUL byte or a lone surrogate",
                "env values are text: encode binary data (base64)",
            )
        if size > _MAX_ENV_VALUE:
            raise InvalidInput(f"env var {key!r} is larger than 32 KiB", "mount a volume for large data")


def logs_since(since_s: int | None, now: float) -> datetime | None:
    """The time ``since_s`` seconds before the Unix time ``now``; a span longer than the epoch means all of it
    (a bare ``timedelta`` of a tenant's number overflows)."""
    if since_s is None:
        return None
    return datetime.fromtimestamp(now - min(since_s, now), UTC)


async def resolve_runtime(settings: Settings, backend: Backend, requested: str | None) -> str:
    """The engine's name of the runtime asked for (gVisor by default). Raises: InvalidInput, RuntimeUnavailable."""
    runtime = _RUNTIME_ALIASES.get(requested or "", requested or settings.default_runtime)
    if runtime == "runc" and not settings.allow_runc:
        raise RuntimeUnavailable(
            "runtime 'runc' is disabled on this platform", "omit runtime to get gVisor (runsc), the default"
        )
    if runtime not in {"runsc", "runc", "sysbox-runc"}:
        raise InvalidInput(f"unknown runtime {requested!r}", "use 'runsc' (default) or 'sysbox' for Docker-in-Docker")
    present = await backend.runtimes()
    if runtime not in present:
        raise RuntimeUnavailable(
            f"runtime {runtime!r} is not installed on this node (present: {', '.join(sorted(present)) or 'none'})"
        )
    return runtime
