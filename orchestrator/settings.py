"""Operator settings: every field is also an ``AGENTHOST_<NAME>`` environment variable."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .dnsnames import is_dns_label, normalize_domain, parse_resolver
from .settings_ingress import IngressSettings
from .settings_nomad import NomadSettings

__all__ = [
    "DEFAULT_TOOLSETS",
    "TOOLSETS",
    "Quotas",
    "Settings",
    "is_dns_label",
    "normalize_domain",
    "parse_cidrs",
    "parse_resolver",
    "parse_toolsets",
]


# The groups of MCP tools a server or a request can ask for (mcp_server/toolsets.py says which tool is in
# which); whoami and platform_status are always listed. "all" names every one.
TOOLSETS = ("services", "builds", "data", "access", "sandboxes", "admin", "domains")
DEFAULT_TOOLSETS = ("services", "builds", "admin")


def parse_toolsets(value: Any) -> list[str]:
    """Toolset names from a list or a comma-separated string; "all" stands for every one.

    Raises: ValueError naming the unknown ones.
    """
    names = [str(v).strip() for v in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    if "all" in names:
        return list(TOOLSETS)
    unknown = [n for n in names if n not in TOOLSETS]
    if unknown:
        raise ValueError(f"unknown toolset(s) {', '.join(unknown)}: choose from {', '.join(TOOLSETS)} or all")
    return [n for n in TOOLSETS if n in names]


def parse_cidrs(value: Any) -> list[str]:
    """IPv4 CIDRs from a list, a JSON list or a comma-separated string, normalised ('10.0.0.5' -> '10.0.0.5/32').

    Raises: ValueError saying which entry is wrong and why.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of CIDRs: {exc.msg}") from exc
            except RecursionError:
                raise ValueError("not a JSON list of CIDRs: nested too deeply") from None
        else:
            value = [part for part in text.replace(" ", ",").split(",") if part]
    if not isinstance(value, list):
        raise ValueError("expected CIDRs, e.g. '10.20.0.0/16,192.168.5.7'")
    cidrs = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a CIDR string")
        try:
            net = ipaddress.ip_network(item.strip())
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(item.strip(), strict=False)}?"
            except ValueError:
                pass
            raise ValueError(f"{item!r} is not a valid CIDR ({exc}){hint}") from None
        if net.version != 4:
            raise ValueError(f"{item!r} is IPv6: egress is filtered for IPv4 only (agenthost's bridges have no IPv6)")
        cidrs.append(str(net))
    return cidrs


class Quotas(BaseModel):
    """Per-tenant limits, fixed when the tenant is created (from AGENTHOST_QUOTAS, a JSON object).

    Memory and CPUs are those of the tenant's services, databases and sandboxes together.
    """

    max_services: int = 20
    max_memory_mb: int = 8192
    max_cpus: float = 8.0
    max_databases: int = 10
    max_sandboxes: int = 20
    max_service_memory_mb: int = Field(4096, description="memory of one service, database or sandbox")
    max_concurrent_builds: int = 2
    max_volumes: int = Field(20, description="named volumes of services, kept ones included")
    max_backups: int = Field(50, description="backup records, whatever their status")
    max_backup_bytes: int = Field(10 * 1024**3, description="no new backup once complete ones hold this much")
    max_build_log_bytes: int = Field(
        64 * 1024**2, description="build logs kept; past it the oldest logs of finished builds are removed"
    )
    max_build_images: int = Field(50, description="images of succeeded builds kept (deployed ones always)")
    max_api_keys: int = Field(25, description="API keys not revoked")
    max_env_vars: int = Field(100, description="env vars of one service")
    max_domains: int = 20  # custom domains, pending claims included (no description: whoami is in every list)


class Settings(IngressSettings, NomadSettings, BaseSettings):
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
    toolsets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TOOLSETS),
        description="MCP/REST tools offered when a request names none: comma-separated toolsets, or all",
    )
    # Egress never reaches the host, link-local, private ranges, CGNAT or other tenants; these CIDRs are
    # reachable anyway (never the tenant pool). Host-wide: platforms sharing a host share one allowlist.
    egress_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="IPv4 CIDRs workloads may reach besides the internet: 'a/n,b/m' or JSON"
    )
    allow_unfiltered_egress: bool = Field(
        False, description="without iptables, still run egress 'open' workloads (they reach the LAN and metadata)"
    )
    allowed_hosts: list[str] = Field(default_factory=list, description="extra Host headers the HTTP server accepts")

    default_memory_mb: int = 256
    default_cpus: float = 0.5
    # Host tasks per service or sandbox container. Under gVisor's ptrace platform every process in the sandbox costs the
    # host up to ~35 tasks (a stub process with a thread per sentry thread), and a refused clone crashes the whole
    # sandbox (exit 2): 256 held about ten processes; 1024 holds a few dozen and still stops a fork bomb. A Postgres at
    # max_connections=100 needs a few thousand; the engine bounds its own process count.
    default_pids_limit: int = 1024
    database_pids_limit: int = Field(4096, ge=64, description="host tasks per database container")
    tmpfs_size_mb: int = 64
    wait_timeout_s: float = 45.0
    crash_limit: int = 5
    service_revisions_kept: int = Field(20, ge=1, description="revisions kept per service; older ones are deleted")
    log_max_bytes: int = 64 * 1024
    rate_limit_per_minute: int = 600
    # Fairness between tenants (orchestrator/fairness.py): caps per tenant and process; past one, `busy` at once.
    tenant_max_inflight: int = Field(8, ge=1, description="tool calls of one tenant running at once")
    tenant_max_concurrent_execs: int = Field(4, ge=1, description="execs of one tenant running at once")
    backend_max_threads: int = Field(32, ge=2, description="worker threads for engine calls, all tenants together")
    tenant_max_backend_threads: int = Field(4, ge=1, description="of those, the most one tenant's calls hold")
    disk_warn_percent: float = 80.0
    disk_refuse_percent: float = 90.0
    reconcile_interval_s: float = 30.0
    engine_facts_ttl_s: float = Field(
        2.0, ge=0, description="platform_status reuses the engine's version, runtimes and nodes this long"
    )
    usage_cache_ttl_s: float = Field(
        2.0,
        ge=0,
        description="whoami reuses a tenant's volume count and build log bytes this long (the tenant's own"
        " mutating calls drop them at once)",
    )
    audit_retention_days: float = Field(90.0, gt=0, description="audit rows older than this are deleted")
    event_retention_days: float = Field(30.0, gt=0, description="events older than this are deleted")
    events_per_tenant: int = Field(5000, ge=10, description="a tenant's newest events kept; older ones go")

    quotas: Quotas = Field(default_factory=Quotas)

    # The API gate (mcp_server): what one caller may send and hold open.
    max_request_bytes: int = Field(1024 * 1024, ge=1024, description="largest REST or /mcp request body")
    max_json_depth: int = Field(64, ge=4, description="deepest nesting of arrays and objects in a REST body")
    mcp_sessions_per_tenant: int = Field(16, ge=1, description="open streamable-HTTP MCP sessions per tenant")
    mcp_session_idle_s: float = Field(1800.0, gt=0, description="an MCP session without requests closes after this")
    idempotency_ttl_s: float = Field(86400.0, gt=0, description="how long a REST Idempotency-Key is remembered")
    idempotency_lease_s: float = Field(
        3600.0, gt=0, description="how long an unfinished first request holds its key (longer than any call runs)"
    )

    # OAuth 2.1 for remote MCP clients (orchestrator/oauth.py, mcp_server/oauth.py).
    oauth_issuer_url: str | None = Field(
        None, description="the server's public base URL, the OAuth issuer; default: http://HOST:PORT of serve"
    )
    oauth_access_token_ttl_s: int = Field(900, ge=60, description="lifetime of an OAuth access token")
    oauth_refresh_token_ttl_s: int = Field(
        30 * 86400, ge=300, description="lifetime of an OAuth refresh token (each refresh rotates it)"
    )

    # Builds from git (orchestrator/builds/).
    allow_local_git: bool = Field(False, description="accept local paths, file:// and http(s)://127.0.0.1 git URLs")
    git_allow_private_hosts: bool = Field(
        False, description="accept git hosts that resolve to private or link-local addresses (never metadata ones)"
    )
    registry: str = Field("127.0.0.1:5000", description="registry builds are pushed to; empty: keep images local")
    registry_ca_file: str = Field(
        "", description="CA certificate that signs an https registry's certificate; empty: the system's CAs"
    )
    build_dir: Path | None = Field(None, description="where sources are checked out; default: a temp dir")
    build_timeout_s: float = Field(900.0, description="time limit of one build, and the most a request may ask for")
    build_memory_mb: int = 2048
    build_cpus: float = 1.0
    build_network: Literal["open", "web", "none"] = Field("open", description="egress policy of RUN steps")
    build_pids_limit: int = Field(
        1024, ge=128, description="processes of a build's RUN steps (under runsc ~80 go to the sandbox itself)"
    )
    build_disk_mb: int = Field(10240, ge=1, description="what a build's RUN steps may write, layers together")
    build_log_max_bytes: int = 1024 * 1024
    build_max_source_mb: int = 512
    build_max_source_files: int = Field(100_000, ge=1, description="files and directories of one checkout")
    build_git_uid: int = Field(65534, ge=1, description="the unprivileged uid git runs as (when agenthost is root)")
    build_git_gid: int = Field(65534, ge=1)
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
    sandbox_pool_warmup: str = Field(
        "python3 -c pass 2>/dev/null; true",
        description="shell command run once in each new pooled container (empty: none), so the first exec is warm",
    )
    sandbox_pool_refill_delay_s: float = Field(
        2.0, ge=0, le=60, description="a claim that leaves a warm container waits this long before the refill"
    )
    sandbox_memory_mb: int = 512
    sandbox_cpus: float = 1.0
    sandbox_workspace_mb: int = 256
    sandbox_default_ttl_s: int = 3600
    sandbox_max_ttl_s: int = 86400
    sandbox_reap_interval_s: float = 5.0

    ssh_bind: str = Field("0.0.0.0", description="where the SSH gateway of `agenthost serve` listens")
    ssh_port: int = Field(2222, ge=1, le=65535, description="the SSH gateway's port (ssh_info gives publish_host)")
    ssh_max_keys: int = 10
    ssh_idle_timeout_s: float = Field(900.0, gt=0, description="an SSH connection with no traffic closes after this")
    ssh_max_sessions_per_tenant: int = Field(20, ge=1, description="open SSH sessions of one tenant")
    ssh_max_sessions_per_target: int = Field(5, ge=1, description="open SSH sessions into one service")

    # Images: ordinary registry images in production; on air-gapped hosts (and in tests) `agenthost images build`'s.
    image_base: str = "agenthost/base:bookworm"
    image_python: str = "agenthost/python:bookworm"
    image_postgres: str = "agenthost/postgres:bookworm"
    image_redis: str = "agenthost/redis:bookworm"
    image_node: str = "agenthost/node:bookworm"
    # What else tenants may run and build FROM besides the images above and their own builds: glob
    # patterns (fnmatch) on the reference with its tag, e.g. ["python:3.*", "registry.example.com/shared/*"]
    # (a JSON list, or the patterns separated by commas).
    image_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="image patterns tenants may use"
    )
    debian_suite: str = "bookworm"
    debian_mirror: str | None = None

    @field_validator("toolsets", mode="before")
    @classmethod
    def _toolsets(cls, value: Any) -> list[str]:
        return parse_toolsets(value)

    @field_validator("egress_allow", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> list[str]:
        return parse_cidrs(value)

    @field_validator("image_allow", mode="before")
    @classmethod
    def _patterns(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text) if text.startswith("[") else text.split(",")
            except RecursionError:
                raise ValueError("not a JSON list of image patterns: nested too deeply") from None
        if isinstance(value, list):
            return [p.strip() if isinstance(p, str) else p for p in value if not isinstance(p, str) or p.strip()]
        return value

    @model_validator(mode="after")
    def _tenant_share_below_total(self) -> Settings:
        if self.tenant_max_backend_threads >= self.backend_max_threads:
            raise ValueError(
                f"tenant_max_backend_threads ({self.tenant_max_backend_threads}) must be below backend_max_threads"
                f" ({self.backend_max_threads}), or one tenant could hold every engine thread"
            )
        return self

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
    def ingress_dir(self) -> Path:
        return self.data_dir / "ingress"

    @property
    def ingress_socket(self) -> Path:
        return self.ingress_admin_socket or self.ingress_dir / "admin.sock"

    @property
    def backup_staging_dir(self) -> Path:
        return self.data_dir / "backup-staging"
