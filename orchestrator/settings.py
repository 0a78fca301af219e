"""Operator settings: every field is also an ``AGENTHOST_<NAME>`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Quotas", "Settings"]


class Quotas(BaseModel):
    """Per-tenant limits; an admin may override them per tenant."""

    max_services: int = 20
    max_memory_mb: int = 8192
    max_cpus: float = 8.0
    max_databases: int = 10
    max_sandboxes: int = 20
    max_service_memory_mb: int = 4096
    max_concurrent_builds: int = 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTHOST_", extra="ignore")

    data_dir: Path = Path("./agenthost-data")
    backend: Literal["docker", "nomad"] = "docker"
    docker_host: str | None = None
    default_runtime: str = "runsc"
    allow_runc: bool = False
    publish_host: str = "127.0.0.1"
    read_only: bool = False
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers the HTTP server accepts")

    default_memory_mb: int = 256
    default_cpus: float = 0.5
    default_pids_limit: int = 256
    tmpfs_size_mb: int = 64
    wait_timeout_s: float = 45.0
    crash_limit: int = 5
    log_max_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 600
    disk_warn_percent: float = 80.0
    disk_refuse_percent: float = 90.0
    reconcile_interval_s: float = 30.0

    quotas: Quotas = Field(default_factory=Quotas)

    # exec: stdout and stderr each keep at most exec_max_output_bytes (head and tail when cut).
    exec_default_timeout_s: float = 60.0
    exec_max_timeout_s: float = 600.0
    exec_max_output_bytes: int = 64 * 1024
    exec_max_stdin_bytes: int = 1024 * 1024

    # Sandboxes: a warm pool of pre-started gVisor containers per image (and network) in sandbox_pool_images.
    sandbox_image: str = Field("", description="default sandbox image; empty means image_python")
    sandbox_pool_images: list[str] = Field(default_factory=list, description="empty means [the default image]")
    sandbox_pool_networks: list[Literal["none", "egress"]] = Field(default_factory=lambda: ["none"])  # type: ignore[arg-type]
    sandbox_pool_size: int = Field(2, ge=0, le=64, description="warm containers kept per image and network")
    sandbox_memory_mb: int = 512
    sandbox_cpus: float = 1.0
    sandbox_workspace_mb: int = 256
    sandbox_default_ttl_s: int = 3600
    sandbox_max_ttl_s: int = 86400
    sandbox_reap_interval_s: float = 5.0

    # SSH: an sshd sidecar per service with keys; sessions run in it, within these limits.
    ssh_memory_mb: int = 128
    ssh_cpus: float = 0.5
    ssh_max_keys: int = 10

    # Images. Production points these at ordinary registry images; air-gapped hosts
    # (and this project's tests) at the ones `agenthost images build` makes.
    image_base: str = "agenthost/base:bookworm"
    image_python: str = "agenthost/python:bookworm"
    image_postgres: str = "agenthost/postgres:bookworm"
    image_redis: str = "agenthost/redis:bookworm"
    image_sshd: str = "agenthost/sshd:bookworm"
    debian_suite: str = "bookworm"
    debian_mirror: str | None = None

    @property
    def default_sandbox_image(self) -> str:
        return self.sandbox_image or self.image_python

    @property
    def pool_images(self) -> list[str]:
        return self.sandbox_pool_images or [self.default_sandbox_image]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agenthost.db"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / "master.key"
