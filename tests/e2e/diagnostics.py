"""What a failed e2e test's report adds, so that a failure in CI says why after the run has removed its temporary
directories and the test cluster's state: for each agenthost the test used, whether its server still runs and the
end of its log; on the Nomad test cluster, each agent's latest warnings and errors."""

from __future__ import annotations

from pathlib import Path

from .harness import AgentHost
from .nomad_cluster import cluster_state_dir

__all__ = ["cluster_sections", "server_sections"]

_SERVER_LINES = 60
_AGENT_LINES = 25
# What the agents log for every allocation a test stops (a template's Variable watch ending, the task API's
# socket path too long under the cache dir): it says nothing about a failure and would fill the section.
_NOISE = ("allocation is terminal", "error authenticating request", "error creating task api socket")


def _tail(path: Path, lines: int, keep: tuple[str, ...] = ()) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} does not exist)"
    if keep:
        text = [line for line in text if any(w in line for w in keep) and not any(n in line for n in _NOISE)]
    return "\n".join(text[-lines:]) or "(nothing)"


def server_sections(hosts: list[AgentHost]) -> list[tuple[str, str]]:
    """One section per host whose `agenthost serve` was started: running or how it exited, and its log's end."""
    sections = []
    for host in hosts:
        log = host.data_dir / "serve.log"
        if not log.exists():
            continue
        state = host.server_state()
        sections.append((f"agenthost serve on {host.data_dir.name} ({state})", _tail(log, _SERVER_LINES)))
    return sections


def cluster_sections() -> list[tuple[str, str]]:
    """The Nomad test cluster's agents (server and clients): their last warnings and errors."""
    state = cluster_state_dir()
    logs = sorted([state / "server" / "agent.log", *state.glob("*/nomad.log")])
    keep = ("[WARN]", "[ERROR]")
    return [
        (f"Nomad test cluster: {log.parent.name}'s warnings and errors", _tail(log, _AGENT_LINES, keep))
        for log in logs
        if log.exists()
    ]
