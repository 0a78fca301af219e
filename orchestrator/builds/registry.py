"""Which image does the registry serve under a tag? Asked when workloads run on nodes that pull (Nomad).

A build's image is pushed to ``settings.registry``; on Nomad the nodes pull it from there, so the
copy on the control plane's engine says nothing about whether a deploy can run, nor whether it
runs the image the build made. The registry's own answer (the Docker Registry HTTP API v2,
``HEAD /v2/<repository>/manifests/<tag>`` and its ``Docker-Content-Digest``) says both.
"""

from __future__ import annotations

import ssl

import docker.auth
import docker.errors
import httpx

from ..errors import BackendUnavailable

__all__ = ["registry_digest", "registry_of"]

_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def registry_of(image: str) -> str | None:
    """The registry host[:port] an image reference names, or None for a local name like ``app:1``."""
    first, sep, _ = image.partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else None


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


def _login(registry: str) -> tuple[str, str] | None:
    """The login the control plane's docker client config holds for ``registry`` (DOCKER_CONFIG, else
    ~/.docker/config.json): the one the builder pushes with.

    Raises: BackendUnavailable when its credential helper fails.
    """
    try:
        found = docker.auth.resolve_authconfig(docker.auth.load_config(), registry) or {}
    except docker.errors.DockerException as exc:  # a credential helper that failed or is missing
        raise BackendUnavailable(
            f"the control plane's docker credentials for {registry} cannot be read ({exc})",
            "an operator must fix the docker client config (DOCKER_CONFIG) of the agenthost service",
        ) from exc
    user, password = found.get("username"), found.get("password")
    return (str(user), str(password)) if user and password else None


async def registry_digest(image: str, timeout_s: float = 10.0, *, ca_file: str = "") -> str | None:
    """The digest the registry serves for ``image`` (its ``Docker-Content-Digest``), or None when it has none.
    ``ca_file``: the CA an https registry's certificate is signed by (else the system's).

    Raises: BackendUnavailable when the registry does not answer, refuses the login, or does not say.
    """
    registry = registry_of(image)
    if registry is None:
        raise ValueError(f"{image!r} names no registry")
    rest = image[len(registry) + 1 :]
    repository, _, digest = rest.partition("@")
    if not digest:
        repository, _, tag = repository.rpartition(":") if ":" in repository else (repository, "", "latest")
        reference = tag or "latest"
    else:
        reference = digest
    # dockerd speaks plain http only to loopback (and explicitly insecure) registries.
    scheme = "http" if _loopback(registry) else "https"
    url = f"{scheme}://{registry}/v2/{repository}/manifests/{reference}"
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
    try:
        async with httpx.AsyncClient(timeout=timeout_s, verify=verify, auth=_login(registry)) as client:
            response = await client.head(url, headers={"Accept": _ACCEPT})
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"the image registry {registry} did not answer ({exc})", "an operator must check the registry"
        ) from exc
    if response.status_code == 404:
        return None
    if response.status_code == 401:
        raise BackendUnavailable(
            f"the image registry {registry} refused the control plane's login",
            "an operator must give the control plane's docker client config (DOCKER_CONFIG) the registry's login",
        )
    served = response.headers.get("Docker-Content-Digest")
    if response.status_code != 200 or not served:
        raise BackendUnavailable(f"the image registry {registry} answered {response.status_code} for {image}")
    return str(served)
