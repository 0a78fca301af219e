"""The engine's build stream: the request, read in a worker thread and shut on demand, and its parser."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import docker.errors

from ...errors import BuildFailed

__all__ = ["Job", "Parser", "Stopped"]

_LAYER = re.compile(r"^ ---> ([0-9a-f]{12})$")
_RUNNING = re.compile(r"^ ---> Running in ([0-9a-f]{12})$")


class Stopped(Exception):
    """The build's stream was shut on purpose."""


class Job:
    """One build request: read in a worker thread, parsed on the event loop.

    ``abort`` asks the engine to stop by shutting the connection for writing: the engine takes the
    end of the request as the client going away and cancels the build, but its stream stays readable
    and is read to its end. A step that was finishing when the build was cancelled is still committed
    (the classic builder checks for cancellation only between steps, and a step's container that exits
    as it is cancelled may be committed rather than killed), and its layer is reported in the stream
    like any other; the stream ends when the engine is done with the build. ``kill`` cuts the stream,
    for an engine that does not end it: whatever it commits after that is not reported.
    """

    def __init__(self, api: Any, params: dict[str, Any], context: Any) -> None:
        self.api = api
        self.params = params
        self.context = context
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.ended = False  # the engine ended the stream: it is done with the build
        self._killed = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def abort(self) -> None:
        with self._lock:
            self.stop.set()
            self._shutdown()

    def kill(self) -> None:
        with self._lock:
            self.stop.set()
            self._killed = True
            self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR if self._killed else socket.SHUT_WR)
            except OSError:
                pass

    def run(self, sink: Callable[[dict[str, Any]], None]) -> None:
        try:
            if self.stop.is_set():
                raise Stopped
            resp = self.api._post(
                self.api._url("/build"),
                data=self.context,
                params=self.params,
                headers={"Content-Type": "application/tar"},
                stream=True,
                timeout=None,
            )
            try:
                self.api._raise_for_status(resp)
            except docker.errors.APIError as exc:
                if exc.status_code is not None and exc.status_code < 500:  # e.g. a Dockerfile parse error
                    raise BuildFailed(f"the Dockerfile failed: {exc.explanation}") from exc
                raise
            raw = self.api._get_raw_response_socket(resp)
            with self._lock:
                self._sock = getattr(raw, "_sock", raw)
                if self.stop.is_set():
                    self._shutdown()
            try:
                for chunk in self.api._stream_helper(resp, decode=True):
                    anyio.from_thread.run_sync(sink, chunk)
            except Exception:
                if self.stop.is_set():
                    raise Stopped from None
                raise
            finally:
                resp.close()
            with self._lock:
                if self._killed:  # the end we read is our own cut
                    raise Stopped
                self.ended = True
        finally:
            self.context.close()
            self.finished.set()


class Parser:
    """Turns the engine's JSON stream into log lines, the layer ids this build made, and its outcome."""

    def __init__(self) -> None:
        self.buffer = ""
        self.new_lines: list[str] = []
        self.layers: list[str] = []
        self.containers: list[str] = []
        self.error: str | None = None
        self.image_id: str | None = None
        self._from_step = False
        self._cached = False

    def feed(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            self.error = str(chunk.get("error") or "build failed").strip()
            self.new_lines.append(self.error)
        if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            self.image_id = str(chunk["aux"]["ID"])
        text = chunk.get("stream")
        if text is None and chunk.get("status") and not chunk.get("progressDetail"):
            text = f"{chunk['status']}\n"
        if not text:
            return
        self.buffer += str(text)
        *complete, self.buffer = self.buffer.split("\n")
        for line in complete:
            self._line(line)

    def flush(self) -> None:
        if self.buffer:
            self._line(self.buffer)
            self.buffer = ""

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        self.new_lines.append(line)
        if line.startswith("Step "):
            instruction = line.partition(" : ")[2].lstrip().upper()
            self._from_step = instruction.startswith("FROM ")
            self._cached = False
        elif line == " ---> Using cache":
            self._cached = True
        elif m := _RUNNING.match(line):
            self.containers.append(m.group(1))
        elif m := _LAYER.match(line):
            # The layer of a FROM step is the base image, a cached one belongs to an earlier build.
            if not self._from_step and not self._cached:
                self.layers.append(m.group(1))
