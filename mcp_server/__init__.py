"""The faces of agenthost: MCP tools, REST, auth and the operator CLI."""

from importlib.metadata import version

__version__ = version("agenthost")
