"""Operator settings: every field is also an ``AGENTHOST_<NAME>`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field
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
    tenant_network_pool: str = Field("10.213.0.0/16", description="subnets for tenants' private networks")
    tenant_network_prefix: int = Field(24, ge=16, le=29, description="size of each tenant's subnet")
    read_only: bool = False
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers the HTTP server accepts")

    # Nomad (backend = "nomad"). The address and token also honour Nomad's own NOMAD_ADDR / NOMAD_TOKEN.
    nomad_addr: str = Field(
        "http://127.0.0.1:4646", validation_alias=AliasChoices("AGENTHOST_NOMAD_ADDR", "NOMAD_ADDR", "nomad_addr")
    )
    nomad_token: str | None = Field(
        None, validation_alias=AliasChoices("AGENTHOST_NOMAD_TOKEN", "NOMAD_TOKEN", "nomad_token")
    )
    nomad_namespace: str = "default"
    nomad_region: str | None = None
    nomad_datacenters: list[str] = Field(default_factory=lambda: ["*"])
    nomad_node_pool: str = "default"

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

    # Builds from git (orchestrator/builds.py).
    allow_local_git: bool = Field(False, description="accept local paths, file:// and http(s)://127.0.0.1 git URLs")
    git_allow_private_hosts: bool = Field(
        False, description="accept git hosts that resolve to private or link-local addresses (never metadata ones)"
    )
    registry: str = Field("127.0.0.1:5000", description="registry builds are pushed to; empty: keep images local")
    build_dir: Path | None = Field(None, description="where sources are checked out; default: a temp dir")
    build_timeout_s: float = Field(900.0, description="time limit of one build, and the most a request may ask for")
    build_memory_mb: int = 2048
    build_cpus: float = 1.0
    build_network: Literal["open", "web", "none"] = Field("open", description="egress policy of RUN steps")
    build_log_max_bytes: int = 1024 * 1024
    build_max_source_mb: int = 512
    build_queue_limit: int = Field(10, description="queued plus running builds per tenant")
    build_max_concurrent: int = Field(2, description="running builds on this host, all tenants together")
    build_keep_images: int = Field(5, description="images kept per tenant and name (older ones, unless deployed, go)")
    build_base_python: str = "agenthost/python:bookworm"
    build_base_node: str = "agenthost/node:bookworm"
    build_base_static: str = "agenthost/python:bookworm"

    # Backups: one restic repository per tenant, in a local directory or an S3-compatible bucket.
    backup_target: Literal["local", "s3"] = "local"
    backup_local_dir: Path | None = Field(None, description="default: <data_dir>/restic")
    backup_s3_endpoint: str | None = Field(None, description="e.g. https://s3.example.com or http://127.0.0.1:9000")
    backup_s3_bucket: str = "agenthost-backups"
    backup_s3_prefix: str = ""
    backup_s3_access_key: str | None = None
    backup_s3_secret_key: str | None = None
    backup_s3_region: str = "us-east-1"
    backup_timeout_s: float = 3600.0
    restic_bin: str = "restic"

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
    sandbox_pool_idle_s: float = Field(86400.0, description="a shape's pool drains after this long unasked")
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
    image_node: str = "agenthost/node:bookworm"
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

    @property
    def restic_local_dir(self) -> Path:
        return self.backup_local_dir or self.data_dir / "restic"

    @property
    def backup_staging_dir(self) -> Path:
        return self.data_dir / "backup-staging"
