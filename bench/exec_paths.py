"""Where the floor of bench/sandbox.py goes: one command in a running gVisor sandbox, by three paths.

All three run in containers of the same image with the sandbox's settings (bench/sandbox.py's SANDBOX),
alternating round by round:

- ``exec_run``: the Docker SDK's exec of the command (the floor sandbox.py compares against);
- ``exec_run /bin/true``: the same exec path with a command that does nothing: the engine's own cost of an
  exec (dockerd, containerd, the shim, the runtime), whatever the command;
- ``exec_run /bin/true, runc``: the same in a container with the same settings under runc instead of gVisor,
  which says how much of that cost is gVisor's;
- ``resident``: the same command run by a process already running in the sandbox (a few lines of Python,
  the container's main process), asked over the container's attach stream: no engine call per command.

Nothing of agenthost runs here: this measures what the engine allows, to say what a sandbox's first exec
could cost with a process resident in the sandbox instead of an engine exec (docs/performance.md).

Usage: .venv/bin/python bench/exec_paths.py [ROUNDS]
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

import docker
from sandbox import COMMAND, IMAGE, SANDBOX

from common import median_ms

RESIDENT = """
import json, subprocess, sys
for line in sys.stdin:
    p = subprocess.run(json.loads(line), capture_output=True)
    sys.stdout.write(json.dumps({"exit_code": p.returncode, "stdout": p.stdout.decode()}) + "\\n")
    sys.stdout.flush()
"""


class Resident:
    """One request at a time over the container's attach stream (stdout comes in the engine's 8-byte frames)."""

    def __init__(self, container: Any) -> None:
        self.sock: socket.socket = container.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})._sock
        self.buf = b""

    def run(self, argv: list[str]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(argv).encode() + b"\n")
        while b"\n" not in self.buf:
            header = self.sock.recv(8, socket.MSG_WAITALL)
            self.buf += self.sock.recv(int.from_bytes(header[4:], "big"), socket.MSG_WAITALL)
        line, self.buf = self.buf.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    started = time.monotonic()
    out = fn(*args)
    return time.monotonic() - started, out


def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    floor = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **SANDBOX)
    runc = client.containers.run(
        IMAGE, ["sleep", "infinity"], detach=True, **{k: v for k, v in SANDBOX.items() if k != "runtime"}
    )
    resident = client.containers.run(IMAGE, ["python3", "-u", "-c", RESIDENT], detach=True, stdin_open=True, **SANDBOX)
    samples: dict[str, list[float]] = {
        "exec_run": [],
        "exec_run /bin/true": [],
        "exec_run /bin/true, runc": [],
        "resident": [],
    }
    try:
        agent = Resident(resident)
        assert agent.run(["/bin/true"])["exit_code"] == 0  # up and warmed once, as a pooled sandbox is
        first, out = timed(agent.run, COMMAND)
        assert out == {"exit_code": 0, "stdout": "42\n"}, out
        for container in (floor, runc):  # all used once before the rounds
            container.exec_run(COMMAND)
        for _ in range(rounds):
            elapsed, res = timed(floor.exec_run, COMMAND)
            assert res.output == b"42\n", res
            samples["exec_run"].append(elapsed)
            elapsed, res = timed(floor.exec_run, ["/bin/true"])
            assert res.exit_code == 0, res
            samples["exec_run /bin/true"].append(elapsed)
            elapsed, res = timed(runc.exec_run, ["/bin/true"])
            assert res.exit_code == 0, res
            samples["exec_run /bin/true, runc"].append(elapsed)
            elapsed, out = timed(agent.run, COMMAND)
            assert out == {"exit_code": 0, "stdout": "42\n"}, out
            samples["resident"].append(elapsed)
    finally:
        for container in (floor, runc, resident):
            container.remove(force=True)
    print(f"one command ({' '.join(COMMAND)}) in a running gVisor sandbox, medians of {rounds}:")
    for label, values in samples.items():
        print(
            f"  {label:<26} {median_ms(values):8.1f} ms   (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"
        )
    print(f"  the resident process's first command after its warm-up, in a young container: {first * 1000:.1f} ms")
    ratio = median_ms(samples["resident"]) / median_ms(samples["exec_run"])
    print(f"  ratio resident/exec_run = {ratio:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
