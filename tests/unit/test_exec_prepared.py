"""The exec started ahead of its command (``PREPARED_WRAPPER``), run by this machine's own POSIX sh: whatever the
request holds, it runs exactly what the wrapper runs, and nothing of a word is ever read as shell code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.backends.exec_wrapper import (
    EXEC_MARKER,
    PREPARED_MAX_LINE,
    WORKDIR_MISSING,
    new_key,
    prepared_argv,
    prepared_request,
    wrap,
)

PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
TRICKY = "two\nlines\n\n 'q' \"dq\" \\back $(touch {p}) `touch {p}` ; touch {p} %s * é\t"


def prepared(key: str) -> subprocess.Popen[bytes]:
    """A prepared exec as an engine holds it: started, its stdin open, nothing written yet."""
    return subprocess.Popen(
        prepared_argv(key),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**PATH, EXEC_MARKER: key},
    )


def run_both(
    argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None, workdir: str | None = None
) -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
    """The command through the wrapper as the engine starts it, and through a prepared exec: (status, out, err)."""
    w = wrap(argv, stdin, env, workdir)
    direct = subprocess.run(
        w.argv, input=w.stdin or b"", capture_output=True, env={**PATH, **w.env}, timeout=30, check=False
    )
    made = prepared_request(w)
    assert made is not None
    request, ack = made
    proc = prepared(new_key())
    out, err = proc.communicate(request, timeout=30)
    assert out.startswith(ack), out  # before anything of the command's
    return (direct.returncode, direct.stdout, direct.stderr), (proc.returncode, out[len(ack) :], err)


def test_tricky_words_env_stdin_and_workdir_run_as_through_the_wrapper(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    word = TRICKY.format(p=pwned)
    env = {"TRICKY": word, "EMPTY": "", "IFS": ":"}
    stdin = b"PLAIN=not-env\n\x00\x01\xff binary\n"
    script = 'pwd; for a in "$@"; do printf "[%s]" "$a"; done; printf "%s|%s|" "$TRICKY" "$EMPTY"; cat'
    argv = ["sh", "-c", script, "ah", word, "", "*", "-", "$AGENTHOST_NL"]
    direct, through = run_both(argv, stdin, env, str(tmp_path))
    assert direct[0] == 0, direct
    assert through == direct
    assert through[1].startswith(f"{tmp_path}\n[{word}][][*][-][$AGENTHOST_NL]{word}||".encode())
    assert through[1].endswith(stdin)
    assert not pwned.exists()


@pytest.mark.parametrize(
    ("argv", "workdir", "status", "err"),
    [
        (["sh", "-c", "exit 7"], None, 7, b""),
        (["no-such-program-here"], None, 127, b"agenthost: command not found: no-such-program-here"),
        (["true"], "/no/such/dir", WORKDIR_MISSING, b"agenthost: workdir /no/such/dir: no such directory"),
        (["echo", "a builtin"], None, 0, b""),
    ],
)
def test_status_and_the_wrapper_s_own_errors_are_the_same(
    argv: list[str], workdir: str | None, status: int, err: bytes
) -> None:
    direct, through = run_both(argv, None, None, workdir)
    assert through == direct
    assert through[0] == status and through[2].startswith(err)


def test_the_command_carries_the_prepared_exec_s_marker_for_the_killer() -> None:
    key = new_key()
    proc = prepared(key)
    made = prepared_request(wrap(["sh", "-c", f'echo "${EXEC_MARKER}"'], None, None, None))
    assert made is not None
    out, _ = proc.communicate(made[0], timeout=30)
    assert (proc.returncode, out) == (0, made[1] + f"{key}\n".encode())


def test_each_request_is_acknowledged_by_its_own_nonce() -> None:
    """What a tenant's process could write into the exec's input, or read of it, before the platform's request
    cannot make the platform take another request's acknowledgement for its own."""
    w = wrap(["true"], None, None, None)
    made = [prepared_request(w) for _ in range(2)]
    assert made[0] is not None and made[1] is not None
    assert made[0][1] != made[1][1] and made[0][1].startswith(b"agenthost-took ")


def test_an_exec_closed_unused_ends_and_runs_nothing(tmp_path: Path) -> None:
    proc = prepared(new_key())
    out, err = proc.communicate(b"", timeout=30)
    assert (proc.returncode, out, err) == (0, b"", b"")


def test_a_request_it_cannot_take_goes_to_the_engine() -> None:
    """Too long a line (read a byte at a time), or a NUL no argv can hold: None, and the caller runs the command
    through the engine's own exec."""
    assert prepared_request(wrap(["echo", "x" * PREPARED_MAX_LINE], None, None, None)) is None
    assert prepared_request(wrap(["echo", "a\x00b"], None, None, None)) is None
    fits = prepared_request(wrap(["echo", "x" * (PREPARED_MAX_LINE - 100)], b"y" * 100_000, None, None))
    assert fits is not None and fits[0].endswith(b"y" * 100_000)


# Run in a PID namespace of its own, so that the killer sees only these processes (it scans the whole /proc).
KILLER_DRIVER = """
import subprocess
from orchestrator.backends.exec_wrapper import prepared_argv, prepared_killer_argv
waiting = [subprocess.Popen(prepared_argv(k), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for k in ("a", "b")]
other = subprocess.Popen(["sleep", "60"])
killer = subprocess.run(prepared_killer_argv(), capture_output=True, text=True, timeout=20)
print(killer.returncode, killer.stdout.strip(), *[p.wait(timeout=10) for p in waiting], other.poll())
other.kill()
"""


def test_the_prepared_killer_kills_every_waiting_exec_and_nothing_else() -> None:
    """Whoever prepared them (another process of the data dir holds their streams): each waiting exec is found by
    its wrapper and killed; the killer, whose own argv names what it looks for, and other processes live on."""
    unshare = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
    probe = subprocess.run([*unshare, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no PID namespace for the killer to scan alone: unshare says {probe.stderr.strip()!r}")
    run = subprocess.run(
        [*unshare, sys.executable, "-c", KILLER_DRIVER], capture_output=True, text=True, timeout=60, check=False
    )
    assert (run.returncode, run.stdout) == (0, "0 2 -9 -9 None\n"), run
