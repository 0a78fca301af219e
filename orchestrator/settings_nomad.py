"""The Nomad backend's settings (orchestrator/backends/nomad/): part of ``Settings``, each also an
``AGENTHOST_<NAME>`` environment variable; the address, token, namespace, region and TLS files also honour
Nomad's own variables (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE, NOMAD_REGION, NOMAD_CACERT, NOMAD_CLIENT_CERT,
NOMAD_CLIENT_KEY), as the nomad CLI reads them."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field

__all__ = ["NomadSettings"]


def _env(name: str) -> AliasChoices:
    """AGENTHOST_NOMAD_X, else Nomad's own NOMAD_X."""
    return AliasChoices(f"AGENTHOST_{name.upper()}", name.upper(), name)


class NomadSettings(BaseModel):
    nomad_addr: str = Field("http://127.0.0.1:4646", validation_alias=_env("nomad_addr"))
    nomad_token: str | None = Field(None, validation_alias=_env("nomad_token"))
    nomad_namespace: str = Field(
        "default",
        validation_alias=_env("nomad_namespace"),
        description="the namespace jobs and Variables go to (the token's policy grants it alone)",
    )
    nomad_region: str | None = Field(None, validation_alias=_env("nomad_region"))
    # mTLS: the CA that signed the Nomad servers' certificates, and the client certificate agenthost presents
    # (an https address without a CA file trusts the default CA bundle).
    nomad_cacert: Path | None = Field(
        None,
        validation_alias=_env("nomad_cacert"),
        description="PEM CA that signed the Nomad servers' HTTPS certificates",
    )
    nomad_client_cert: Path | None = Field(
        None,
        validation_alias=_env("nomad_client_cert"),
        description="PEM client certificate for Nomad's mTLS (with nomad_client_key)",
    )
    nomad_client_key: Path | None = Field(
        None,
        validation_alias=_env("nomad_client_key"),
        description="the client certificate's PEM private key",
    )
    nomad_datacenters: list[str] = Field(default_factory=lambda: ["*"])
    nomad_node_pool: str = "default"
    nomad_cpu_share: float = Field(0.1, gt=0, le=1, description="part of cpus a job reserves (docs/backends.md)")
    nomad_memory_share: float = Field(0.5, gt=0, le=1, description="of memory_mb, where Nomad oversubscribes")
