"""Container and exec inspects over the engine's unix socket, without requests.

An inspect is the engine call read tools make most (one a service in every get_service and list_services,
one in each readiness poll), and an exec makes two (the container's, which its watch starts from, and the
exec's own for its exit status). Through docker-py one costs about 0.6 ms of CPU, almost all of it
requests' own work per call (preparing the request, merging settings, its adapters), and 1.4–3.5 ms of
wall time; the same GET on a plain keep-alive connection costs about 0.1 ms of CPU and 0.5 ms. Only these
GETs go this way: anything but a 200 or a 404, or a transport failure, is left to docker-py, which raises
the error the rest of the backend translates.

Synchronous: called from the engine's worker threads; an inspect takes an idle connection or opens one.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

__all__ = ["UNANSWERED", "InspectingApi", "SocketInspect", "Unanswered"]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Unanswered(Exception):
    """The engine answered something other than the container or 'no such container'."""


class SocketInspect:
    """Keep-alive connections to the engine's socket, one per inspect in flight, kept idle between them."""

    def __init__(self, socket_path: str, api_version: str, timeout: float = 120) -> None:
        self._socket_path = socket_path
        self._prefix = f"/v{api_version}"
        self._timeout = timeout
        self._idle: list[_UnixConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def container(self, name: str) -> dict[str, Any] | None:
        """The engine's inspect of container ``name``; None when it has none by that name.

        Raises: OSError, http.client.HTTPException or ValueError on a transport failure or a garbled answer;
        Unanswered for any other status."""
        return self._get("containers", name)

    def exec(self, exec_id: str) -> dict[str, Any] | None:
        """The engine's inspect of exec ``exec_id``; None when it has none by that id. Raises: as ``container``."""
        return self._get("exec", exec_id)

    def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            conn = self._idle.pop() if self._idle else _UnixConnection(self._socket_path, self._timeout)
        try:
            conn.request("GET", f"{self._prefix}/{kind}/{quote(name, safe='')}/json")
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            conn.close()  # a half-read answer must not be read as the next one's
            raise
        with self._lock:
            if self._closed:
                conn.close()
            else:
                self._idle.append(conn)
        if response.status == 404:
            return None
        if response.status != 200:
            raise Unanswered(f"inspect {kind} {name}: HTTP {response.status}")
        attrs: dict[str, Any] = json.loads(body)
        return attrs

    def close(self) -> None:
        """Close the idle connections (one in use is closed when its inspect ends)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# What a socket inspect raises when docker-py should be asked instead (a transport failure, another status).
UNANSWERED = (OSError, http.client.HTTPException, ValueError, Unanswered)


class InspectingApi:
    """docker-py's low-level API client, whose container and exec inspects go over a SocketInspect first. A
    404 or a failure there is asked of docker-py again, which raises what the caller expects of it."""

    def __init__(self, api: Any, inspect: SocketInspect) -> None:
        self._api = api
        self._inspect = inspect

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)

    def inspect_container(self, container: str) -> dict[str, Any]:
        return self._socket(self._inspect.container, container) or self._api.inspect_container(container)

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return self._socket(self._inspect.exec, exec_id) or self._api.exec_inspect(exec_id)

    @staticmethod
    def _socket(get: Callable[[str], dict[str, Any] | None], name: str) -> dict[str, Any] | None:
        try:
            return get(name)
        except UNANSWERED:
            return None
