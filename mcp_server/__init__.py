"""The faces of agenthost: MCP tools, REST, auth and the operator CLI."""
