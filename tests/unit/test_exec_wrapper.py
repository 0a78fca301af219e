"""The shared exec wrapper and killer, run by this machine's own POSIX sh (as a workload's sh would run them)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.backends.exec_wrapper import (
    WORKDIR_MISSING,
    check_workdir,
    env_line,
    killer_argv,
    session_wrap,
    wrap,
)
from orchestrator.errors import InvalidInput

PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def run(
    argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None, workdir: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    w = wrap(argv, stdin, env, workdir)
    return subprocess.run(
        w.argv, input=w.stdin if w.stdin is not None else b"", capture_output=True, env={**PATH, **w.env}, timeout=30
    )


def test_env_line_is_one_line_of_quoted_words() -> None:
    line = env_line({"A": "x y\n*?[ $(id) `id` ' \" \\c %s é", "B": ""}).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    assert line == "A='x y'\"$AGENTHOST_NL\"'*?[ $(id) `id` '\\'' \" \\c %s é' B=''\n"


@pytest.mark.parametrize(
    ("env", "what"),
    [({"AGENTHOST_EXEC_ID": "x"}, "name"), ({"1A": "x"}, "name"), ({"A-B": "x"}, "name"), ({"A": "a\x00b"}, "NUL")],
)
def test_env_the_wrapper_cannot_hold_is_refused(env: dict[str, str], what: str) -> None:
    with pytest.raises(InvalidInput) as err:
        env_line(env)
    assert what in err.value.message


def test_env_values_reach_the_command_whole_and_stdin_after_them_is_intact() -> None:
    values = {
        "TRICKY": "two\nlines\n\n 'q' \"dq\" \\back \\0101 $(x) %s * é\t",
        "EMPTY": "",
        # the wrapper's own scratch names, and IFS: the wrapper must not trip over them
        "f": "file",
        "rc": "7",
        "IFS": ":",
    }
    stdin = b"PLAIN=not-env\n\x00\x01\xff binary\n"
    script = 'for k in TRICKY EMPTY f rc; do printenv "$k"; printf "|"; done; cat'
    done = run(["sh", "-c", script], stdin, values)
    assert done.returncode == 0, done.stderr
    expected = b"".join(f"{values[k]}\n|".encode() for k in ("TRICKY", "EMPTY", "f", "rc")) + stdin
    assert done.stdout == expected


def test_no_stdin_reads_nothing_and_exits_with_the_command() -> None:
    done = run(["sh", "-c", "cat; echo end; exit 3"])
    assert (done.returncode, done.stdout) == (3, b"end\n")


@pytest.mark.parametrize(
    ("stdin", "env", "out"),
    [(None, None, b"none|"), (None, {"E": "v"}, b"v|"), (b"in\n", None, b"none|in\n"), (b"", {"E": "v"}, b"v|")],
)
def test_the_end_of_stdin_is_never_awaited(stdin: bytes | None, env: dict[str, str] | None, out: bytes) -> None:
    """The engines lose an exec's end of input now and then when it comes at once (containerd's EOF races):
    the wrapper, and the command after it, must finish with their stdin still open."""
    w = wrap(["sh", "-c", 'printf "%s|" "${E:-none}"; cat'], stdin, env, None)
    proc = subprocess.Popen(w.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**PATH, **w.env})
    assert proc.stdin is not None
    proc.stdin.write(w.stdin or b"")
    proc.stdin.flush()  # and never closed until the end
    try:
        returncode = proc.wait(timeout=10)  # TimeoutExpired: it waited for the end of its input
        assert proc.stdout is not None
        assert (returncode, proc.stdout.read()) == (0, out)
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


def test_the_tenant_path_is_the_command_s_not_the_wrapper_s() -> None:
    done = run(["sh", "-c", 'echo "$PATH"'], env={"PATH": "/opt/x:/usr/bin:/bin"})
    assert done.stdout == b"/opt/x:/usr/bin:/bin\n"
    missing = run(["ls"], env={"PATH": "/nonexistent"})
    assert missing.returncode == 127 and missing.stderr.startswith(b"agenthost: command not found: ls")


def test_missing_workdir_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    done = run(["sh", "-c", "echo ran"], workdir=str(tmp_path / "nope"))
    assert done.returncode == WORKDIR_MISSING and done.stdout == b""
    with pytest.raises(InvalidInput) as err:
        check_workdir(done.returncode, len(done.stdout), done.stderr.decode(), str(tmp_path / "nope"))
    assert "does not exist" in err.value.message
    assert run(["pwd"], workdir=str(tmp_path)).stdout == f"{tmp_path}\n".encode()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_killer_ends_children_and_a_setsid_double_fork(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        f"sleep 3101 & echo $! >> {pids}; "
        f"(setsid sh -c 'sleep 3102 & echo $! >> {pids}; exit' &); "
        f"sh -c 'sleep 3103 & echo $! >> {pids}; wait'"
    )
    w = wrap(["sh", "-c", script], None, {"SECRET": "s"}, None)
    # A session of its own, as the engines start an exec.
    proc = subprocess.Popen(
        w.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**PATH, **w.env}, start_new_session=True
    )
    assert proc.stdin is not None and w.stdin is not None
    proc.stdin.write(w.stdin)
    proc.stdin.close()
    try:
        deadline = time.monotonic() + 20
        while len(pids.read_text().split() if pids.exists() else []) < 3:
            assert time.monotonic() < deadline, "the tree never started"
            time.sleep(0.05)
        started = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in started)
        killer = subprocess.run(killer_argv(w.key), capture_output=True, env=PATH, timeout=60)
        assert killer.returncode == 0, killer
        assert proc.wait(10) == -9
        assert not [p for p in started if _alive(p)]
    finally:
        for p in [int(p) for p in pids.read_text().split()] if pids.exists() else []:
            if _alive(p):
                os.kill(p, 9)
        proc.kill()


def test_a_program_replaces_the_wrapper_a_builtin_runs_in_it_and_nothing_is_left_in_tmp() -> None:
    w = wrap(["sh", "-c", "echo $$"], None, None, None)
    proc = subprocess.run(w.argv, capture_output=True, env={**PATH, **w.env}, timeout=30)
    assert proc.returncode == 0
    # No fork: the command has the wrapper's pid (the exec's session leader), which the engine started.
    cat = subprocess.Popen(wrap(["sh", "-c", "echo $$; exit 4"], None, None, None).argv, stdout=subprocess.PIPE)
    out, _ = cat.communicate(timeout=30)
    assert (cat.returncode, out) == (4, f"{cat.pid}\n".encode())
    assert run(["echo", "a", "b"]).stdout == b"a b\n"
    assert run(["cd", "/nonexistent"]).returncode != 0 and run(["cd", "/"]).returncode == 0
    assert run(["test", "-d", "/"]).returncode == 0 and run(["false"]).returncode == 1
    assert run(["cat"], b"in\n").stdout == b"in\n"
    assert not list(Path("/tmp").glob(f".ah-*-{w.key}"))


def _marked_loop(argv: list[str], tmp_path: Path, with_env: bool) -> None:
    """A command that never ends and forks nothing is still found (by the marker the engine set) and killed."""
    w = wrap(argv, b"x" * 100_000, None, None)
    if with_env:
        cmd, env = w.argv, {**PATH, **w.env}  # as Docker starts it
    else:
        cmd, env = w.argv_with_env, PATH  # as Nomad starts it
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, start_new_session=True)
    assert proc.stdin is not None and w.stdin is not None
    proc.stdin.write(w.stdin)
    proc.stdin.close()
    try:
        deadline = time.monotonic() + 20
        while not list(Path("/proc").glob("[0-9]*/environ")) or not _runs_marked(w.key):
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.05)
        time.sleep(0.2)  # past the wrapper's set-up, into the loop
        killer = subprocess.run(killer_argv(w.key), capture_output=True, env=PATH, timeout=60)
        assert killer.returncode == 0 and int(killer.stdout.split()[-1]) >= 1, killer
        assert proc.wait(10) == -9
    finally:
        proc.kill()


def _runs_marked(key: str) -> bool:
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"AGENTHOST_EXEC_ID={key}".encode() in environ.read_bytes():
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("with_env", [True, False], ids=["engine-env", "env-prefix"])
def test_killer_ends_a_builtin_loop_in_the_wrapper_itself(tmp_path: Path, with_env: bool) -> None:
    _marked_loop(["eval", "while :; do :; done"], tmp_path, with_env)


@pytest.mark.parametrize("with_env", [True, False], ids=["engine-env", "env-prefix"])
def test_killer_ends_a_program_that_replaced_the_wrapper(tmp_path: Path, with_env: bool) -> None:
    _marked_loop(["sleep", "3104"], tmp_path, with_env)


def test_killer_ends_a_session_found_by_its_recorded_pid(tmp_path: Path) -> None:
    """A session (SSH) is started without the marker in its environment: the killer finds its shell by the pid
    it recorded, and kills its group."""
    w = session_wrap(["sh", "-c", "sleep 3106 & wait"], None)
    proc = subprocess.Popen(w.argv, stdin=subprocess.DEVNULL, env=PATH, start_new_session=True)
    pidfile = Path(f"/tmp/.ah-exec-{w.key}")
    try:
        deadline = time.monotonic() + 20
        while not pidfile.exists():
            assert time.monotonic() < deadline, "the session never started"
            time.sleep(0.05)
        time.sleep(0.2)
        killer = subprocess.run(killer_argv(w.key), capture_output=True, env=PATH, timeout=60)
        assert killer.returncode == 0 and int(killer.stdout.split()[-1]) >= 1, killer
        assert proc.wait(10) == -9
        assert not pidfile.exists()
    finally:
        proc.kill()
