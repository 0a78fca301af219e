"""What a caller asks of a service: the deploy and update requests, and the checks of the env they carry."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from .errors import InvalidInput
from .models import Egress, HealthCheck, ResourceName, VolumeMount

__all__ = ["DeployRequest", "UpdateRequest", "check_env"]

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
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
    wait: bool = True


def check_env(values: dict[str, str]) -> None:
    """Raises: InvalidInput for a malformed or reserved AGENTHOST_ name, or a value larger than 32 KiB."""
    for key, value in values.items():
        if not _ENV_KEY.match(key):
            raise InvalidInput(
                f"invalid env var name {key!r}", "names are letters, digits and '_', not starting with a digit"
            )
        if key.startswith("AGENTHOST_"):
            raise InvalidInput(f"env var {key!r} uses the reserved AGENTHOST_ prefix", "rename it")
        if len(value.encode()) > _MAX_ENV_VALUE:
            raise InvalidInput(f"env var {key!r} is larger than 32 KiB", "mount a volume for large data")
