"""The Nomad backend: workloads as Nomad jobs on a cluster (backend), over Nomad's HTTP API (api), from one
HCL2 template (jobs), with placement waits (allocs), exec, logs, tenant networks (net), nodes, Variables
(vars) and volumes on the node that holds them (volumes, volume_jobs)."""

from .backend import NomadBackend

__all__ = ["NomadBackend"]
