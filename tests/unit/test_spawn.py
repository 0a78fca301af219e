"""infra/spawn.sh: the daemons the test infrastructure starts are known again by pid and start time, so a pid
that the next process or thread took once the daemon was gone is neither taken for it nor killed in its place
(the test cluster's restart of a killed Nomad client did that: pid_max is 32768 on the test machine)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SPAWN = Path(__file__).resolve().parents[2] / "infra" / "spawn.sh"


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f". {SPAWN}\n{script}"], capture_output=True, text=True, timeout=60)


def gone(pidfile: Path) -> None:
    """Kill the daemon of ``pidfile``, and let a clock tick pass: /proc counts start times in ticks (10 ms), and a
    pid is reused only after a whole cycle of pids, never within the tick its daemon started in."""
    assert sh(f"kill -9 {pidfile.read_text().strip()}").returncode == 0
    time.sleep(2 / os.sysconf("SC_CLK_TCK"))


def alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(") ", 1)[1][0] != "Z"


def test_a_spawned_daemon_is_known_by_its_pid_and_start_time_and_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    out = sh(f"spawn {pidfile} /dev/null sleep 60; spawned {pidfile} && echo running; cat {pidfile}")
    assert out.stdout.splitlines()[0] == "running", out
    pid = int(out.stdout.splitlines()[1])
    assert alive(pid) and Path(f"{pidfile}.start").read_text().strip()
    assert sh(f"kill_spawned {pidfile}").returncode == 0
    assert not alive(pid) and not pidfile.exists() and not Path(f"{pidfile}.start").exists()


def test_attack_a_pid_reused_by_another_process_is_neither_running_nor_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    sh(f"spawn {pidfile} /dev/null sleep 60")
    gone(pidfile)
    # The next process gets its pid (here: is written over it, as pid reuse would).
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        assert sh(f"spawned {pidfile}").returncode == 1
        assert sh(f"kill_spawned {pidfile}").returncode == 0
        assert alive(other.pid) and not pidfile.exists()
    finally:
        other.kill()
        other.wait()


def test_attack_a_pid_reused_as_a_thread_s_id_does_not_kill_its_process(tmp_path: Path) -> None:
    """kill(2) with a thread's id signals its whole process: the way an agenthost server was killed."""
    pidfile = tmp_path / "daemon.pid"
    sh(f"spawn {pidfile} /dev/null sleep 60")
    gone(pidfile)
    code = "import threading, time\nt = threading.Thread(target=time.sleep, args=(60,), daemon=True)\nt.start()\n"
    code += "print(t.native_id, flush=True)\ntime.sleep(60)\n"
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        tid = int(server.stdout.readline())
        assert tid != server.pid and sh(f"kill -0 {tid}").returncode == 0  # kill -0 answers for a thread
        pidfile.write_text(f"{tid}\n")
        assert sh(f"spawned {pidfile}").returncode == 1
        assert sh(f"kill_spawned {pidfile}").returncode == 0
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()
