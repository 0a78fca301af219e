"""Toolsets: the groups of tools a server or a request asks for, so an agent's tools/list holds what it uses.

The server's default is the setting ``AGENTHOST_TOOLSETS`` (``agenthost serve|mcp --toolsets``); an HTTP
request (MCP or REST) may name its own in the ``X-AgentHost-Toolsets`` header. whoami and platform_status
are in every choice. A tool outside the chosen toolsets is neither listed nor callable (``registry.admit``).
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.errors import InvalidInput
from orchestrator.settings import parse_toolsets

__all__ = ["ALWAYS", "HEADER", "MEMBERS", "parse_header", "toolsets_of"]

HEADER = "x-agenthost-toolsets"
# In no toolset, so in every choice (tests/unit/test_toolsets.py checks that no other tool is left out).
ALWAYS = frozenset({"whoami", "platform_status"})

# Keyed in the order of orchestrator.settings.TOOLSETS (tests/unit/test_toolsets.py checks both agree).
MEMBERS: dict[str, frozenset[str]] = {
    "services": frozenset(
        {
            "deploy_service",
            "update_service",
            "list_services",
            "get_service",
            "start_service",
            "stop_service",
            "restart_service",
            "delete_service",
            "service_logs",
            "diagnose_service",
            "list_events",
            "set_env",
            "list_env",
            "unset_env",
            "list_revisions",
            "rollback_service",
            "exec",
        }
    ),
    "builds": frozenset({"build_from_git", "get_build", "list_builds", "build_logs", "cancel_build"}),
    "data": frozenset(
        {
            "create_database",
            "list_databases",
            "get_database",
            "database_connection_string",
            "link_database",
            "delete_database",
            "create_backup",
            "list_backups",
            "restore_backup",
            "delete_backup",
            "list_volumes",
            "delete_volume",
        }
    ),
    "access": frozenset({"create_api_key", "list_api_keys", "revoke_api_key", "ssh_info", "add_ssh_key"}),
    "sandboxes": frozenset(
        {"create_sandbox", "list_sandboxes", "get_sandbox", "extend_sandbox", "delete_sandbox", "exec"}
    ),
    "admin": frozenset({"create_tenant", "list_nodes", "set_node_eligibility", "drain_node", "list_audit"}),
    "domains": frozenset({"add_domain", "list_domains", "remove_domain"}),
}


def toolsets_of(tool_name: str) -> frozenset[str]:
    """The toolsets a tool belongs to (empty for the ones every choice includes)."""
    return frozenset(name for name, members in MEMBERS.items() if tool_name in members)


def parse_header(value: str | None, default: Iterable[str]) -> frozenset[str]:
    """The toolsets a request asks for: its header's, or the server's default. Raises: InvalidInput."""
    if value is None:
        return frozenset(default)
    try:
        return frozenset(parse_toolsets(value))
    except ValueError as exc:
        raise InvalidInput(
            f"X-AgentHost-Toolsets: {exc}", "send comma-separated toolset names, or leave the header out"
        ) from exc
