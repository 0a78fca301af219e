"""Docker: one engine (engine: the client, its worker threads, egress rules and networks) shared by the
backend, workloads as containers on one host (backend, containers, exec, logs, net, egress), and the
builder, ``docker build`` with limits and a push to the registry (builder, build, build_*, cgroups, push)."""

from .backend import DockerBackend
from .builder import DockerBuilder
from .engine import DockerEngine

__all__ = ["DockerBackend", "DockerBuilder", "DockerEngine"]
