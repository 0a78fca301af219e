"""Resource links in tool results: an answer that names a service or a build links the resources a client can
open for it, each one a resource ``resources/read`` answers (``_register_resources`` in mcp_server/app.py).
The structured content stays as it is; the links follow the text."""

from __future__ import annotations

from mcp_types import ResourceLink
from pydantic import BaseModel

from orchestrator.builds import Build, BuildSummary
from orchestrator.services import RolledBack, Service, ServiceSummary

__all__ = ["resource_links"]


def _link(uri: str, name: str, description: str) -> ResourceLink:
    return ResourceLink(type="resource_link", uri=uri, name=name, description=description, mime_type="application/json")


def _service(name: str) -> list[ResourceLink]:
    return [
        _link(f"agenthost://services/{name}", f"service {name}", "the service, as get_service"),
        _link(f"agenthost://services/{name}/logs", f"logs of {name}", "its last 200 log lines"),
    ]


def _build(build_id: str) -> ResourceLink:
    return _link(f"agenthost://builds/{build_id}/logs", f"build {build_id} logs", "the build's last 200 lines")


def resource_links(model: BaseModel) -> list[ResourceLink]:
    """The resources an answer names: a service and its logs, the logs of a build."""
    if isinstance(model, Service):
        return _service(model.name) + ([_build(model.build_id)] if model.build_id else [])
    if isinstance(model, ServiceSummary):
        return _service(model.name)
    if isinstance(model, RolledBack):
        return _service(model.service)
    if isinstance(model, Build | BuildSummary):
        return [_build(model.id)]
    return []
