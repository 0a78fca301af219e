"""The orchestration core: use-cases, state and backends. Knows nothing of MCP or HTTP."""
