"""The wrapper every exec runs in, on every backend, and the killer that ends the command's whole process tree.

Both are POSIX ``sh`` (no bash, grep, procps or setsid needed in the image). A backend runs
``wrap(...).argv`` in the workload with ``wrap(...).stdin`` as its whole stdin, and on a deadline, a
cancel or a lost session runs ``killer_argv(key)`` in the same workload.

Env never travels on argv, since ``ps`` in the workload shows every process's argv (and Nomad's alloc
exec has no env parameter at all): it is the first line of stdin, ``KEY='value'`` words, each value
single-quoted with a newline written as ``$AGENTHOST_NL``, so the line holds no newline. The wrapper
reads that one line with ``read`` (which takes a pipe byte by byte, so not a byte past the newline is
consumed) and applies it with one ``eval "export ..."``: builtins only, no fork and no new program, so the
values never reach an argv (and cost nothing under gVisor, where a fork is dear). The rest of stdin is
the command's own, intact: exactly as many bytes as the argv says (``head -c``) are copied into a file in
the workload's /tmp that becomes the command's stdin (so input the command never reads is not left pending
in the engine's pipes), or /dev/null when the caller gave none. With neither env nor input the wrapper
reads nothing at all. It never waits for the end of its stdin: an end that comes at once can be lost on
the way (the EOF races of containerd and its shims: closed before the exec's process has started, the
close goes nowhere), and an exec waiting for it would hang until its deadline. The env is
applied only after the wrapper's own work that runs programs (``head``, ``rm``), so a tenant's PATH cannot
change what those are.

The engines start each exec as a session leader (Docker's exec, and Nomad's alloc exec through the
docker driver), with ``AGENTHOST_EXEC_ID=<key>`` in its environment from its first instruction (``wrap(...).env``:
Docker sets it on the exec; Nomad, which cannot, runs ``wrap(...).argv_with_env`` through ``env``). Everything
the command starts inherits the marker, which also marks processes that ``setsid`` and double-fork out of the
group and away from their parent. The wrapper ends by ``exec``-ing the command (a shell builtin runs in the
wrapper itself), so it forks nothing after its set-up and leaves no file behind: under gVisor every fork and
program costs milliseconds, and an exec is one of the platform's hottest paths. The killer finds every live
process carrying the marker; each that leads its process group (the exec itself, or one that left with
``setsid``) has its whole group killed at once (no fork can outrun that), then every marked process and every
descendant of one, in up to three rounds, until none is left. A process that scrubs its own environment
*and* leaves the session escapes the deadline: it is the tenant's own process in its own workload.

An engine that sets an exec's env and workdir itself (Docker) starts a program with no input without the
wrapper (``runs_unwrapped``): the wrapper would do nothing but look it up and ``exec`` it, and its shell is the
dearest part of a short exec under gVisor. The marker is in that exec's environment all the same.

A workload can also hold an exec started ahead of its command (``PREPARED_WRAPPER``): a shell with the marker
already in its environment, waiting in ``read`` for one line that holds the wrapper's words (the input's size,
the workdir, the argv), each quoted as the env line's values are, then the wrapper's usual stdin; it then runs
the wrapper as above. The engine's exec path (dockerd, containerd, the shim, the runtime) is then paid before
the command is known: for a warm sandbox, its first command runs without it (``prepared_request``).

An interactive session (``session_wrap``) records its shell's pid in /tmp instead; the killer kills that group
too.

Known engine fault: Debian's runsc 20221219 now and then crashes a whole sandbox (exit code 2) after
several exec'd process trees were killed in it, so the kill stays gentle: SIGKILL once per round, a
pause between rounds.
"""

from __future__ import annotations

import re
import shlex
import uuid
from dataclasses import dataclass

from ..errors import InvalidInput

__all__ = [
    "EXEC_MARKER",
    "KILLER",
    "PREPARED_KILLER",
    "PREPARED_MAX_LINE",
    "PREPARED_WRAPPER",
    "PTY_WRAPPER",
    "SESSION_WRAPPER",
    "WORKDIR_MISSING",
    "WRAPPER",
    "WrappedExec",
    "check_workdir",
    "env_line",
    "killed_count",
    "killer_argv",
    "new_key",
    "prepared_argv",
    "prepared_killer_argv",
    "prepared_request",
    "resize_argv",
    "runs_unwrapped",
    "session_wrap",
    "wrap",
]

EXEC_MARKER = "AGENTHOST_EXEC_ID"
WORKDIR_MISSING = 125

# $0 is the exec key; $1 '-' when stdin holds nothing, else how many bytes of input follow the env line (0:
# the command gets /dev/null); $2 the workdir ('' for the workload's own), then the argv. The wrapper's own
# variables carry the reserved AGENTHOST_ prefix, which no tenant env key may use, so applying the env cannot
# overwrite them; the key is $0, which nothing can. ``cat`` stands in for ``head`` only in an image without it.
WRAPPER = (
    'AGENTHOST_E=; [ "$1" = - ] || IFS= read -r AGENTHOST_E; '
    'case $1 in -|0) exec </dev/null;; *) f="/tmp/.ah-in-$0"; '
    'if command -v head >/dev/null 2>&1; then head -c "$1"; else cat; fi > "$f" 2>/dev/null && exec < "$f"; '
    'rm -f "$f";; esac; shift; '
    'if [ -n "$1" ]; then cd -- "$1" 2>/dev/null || '
    f'{{ echo "agenthost: workdir $1: no such directory" >&2; exit {WORKDIR_MISSING}; }}; fi; shift; '
    # The env line is ours, each value single-quoted (see env_line): eval applies it without a fork.
    "AGENTHOST_NL='\n'; "
    '[ -z "$AGENTHOST_E" ] || eval "export $AGENTHOST_E"; '
    f'unset AGENTHOST_E AGENTHOST_NL; export {EXEC_MARKER}="$0"; '
    'if ! command -v -- "$1" >/dev/null 2>&1; then echo "agenthost: command not found: $1" >&2; exit 127; fi; '
    # A builtin (echo, cd, eval...) runs here as it would in any shell; a program replaces the wrapper (no fork).
    'case $1 in */*) ;; *) if PATH=/nonexistent command -v -- "$1" >/dev/null 2>&1; then "$@"; exit; fi;; esac; '
    'exec "$@"'
)

# An exec started before its command is known: $0 is its key; it reads one line of quoted words (see
# prepared_request), makes them its positional parameters with the one eval the wrapper itself uses for the env,
# says on stdout that it took them by the first, the request's nonce (what the platform reads first, before the
# command's output), and goes on as the wrapper with the rest. An end of input before the line (the platform
# closed it unused) ends it.
PREPARED_WRAPPER = (
    "AGENTHOST_NL='\n'; IFS= read -r AGENTHOST_A || exit 0; "
    'eval "set -- $AGENTHOST_A"; unset AGENTHOST_A; printf \'agenthost-took %s\\n\' "$1"; shift; ' + WRAPPER
)
# Kills every prepared exec still waiting in the workload, whoever prepared it (it is found by its wrapper's text:
# the pattern is split so that the killer's own argv does not hold it); prints how many.
PREPARED_KILLER = (
    'me=$$; w="read -r AGENTHOST""_A"; n=0; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$me" ] && continue; '
    'case "$(cat $d/cmdline 2>/dev/null)" in *"$w"*) kill -KILL $p 2>/dev/null && n=$((n + 1));; esac; done; echo $n'
)
# The longest line of words a prepared exec takes: the shell's ``read`` takes a pipe a byte at a time, each a
# system call (dearer under gVisor); a longer command goes through the engine's own exec as before.
PREPARED_MAX_LINE = 4096

# An interactive session (SSH): stdin is the command's own, streamed, so nothing is read from it; $0 is the exec
# key, $1 the TERM to set ('' for none), then the argv. Recorded and marked like an exec, for the same killer.
SESSION_WRAPPER = (
    'echo $$ > "/tmp/.ah-exec-$0" 2>/dev/null; '
    f'export {EXEC_MARKER}="$0"; [ -z "$1" ] || export TERM="$1"; shift; '
    '"$@"; rc=$?; rm -f "/tmp/.ah-exec-$0" "/tmp/.ah-pty-$0"; exit "$rc"'
)
# A terminal made inside the workload: the engines' own (docker exec -t, Nomad's tty exec) give none under
# runsc, so the session is an ordinary exec and script(1) (util-linux, in every Debian-based image), else
# Python's pty module, runs the command on a pseudo-terminal of the workload's own kernel. $1 is the
# command line to run there, then the argv to run without a terminal when the image has neither.
PTY_WRAPPER = (
    'c=$1; shift; if command -v script >/dev/null 2>&1; then exec script -qfec "$c" /dev/null; fi; '
    "if command -v python3 >/dev/null 2>&1; then exec python3 -c "
    '\'import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(["/bin/sh", "-c", sys.argv[1]])))\' "$c"; fi; '
    'echo "agenthost: the image has neither script(1) nor python3 to make a terminal: no PTY" >&2; exec "$@"'
)

# $1 is the exec key. Prints how many processes it killed. Zombies are skipped: they are already dead.
KILLER = (
    "k=$1; me=$$; killed=0; "
    # the parent pid and process group of a live process (fails for a zombie or a process that is gone)
    "live_stat() { s=$(cat /proc/$1/stat 2>/dev/null) || return 1; s=${s##*) }; set -- $s; "
    '[ "$1" != Z ] || return 1; echo $2 $3; }; '
    # a session's recorded shell, if it still runs: a live process whose argv holds the key (not a recycled pid)
    'wrapper() { r=$(cat "/tmp/.ah-exec-$k" 2>/dev/null) && [ -n "$r" ] && live_stat $r >/dev/null || return 1; '
    '  case "$(cat /proc/$r/cmdline 2>/dev/null)" in *"$k"*) echo $r;; *) return 1;; esac; }; '
    # Sets found (every process of the exec) and groups (the groups led by one of them).
    "victims() { "
    '  found=" "; groups=""; if root=$(wrapper); then found=" $root "; groups=$root; fi; '
    '  for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = "$me" ] && continue; '
    f'    case "$(cat $d/environ 2>/dev/null)" in *"{EXEC_MARKER}=$k"*) '
    '      st=$(live_stat $p) || continue; [ "${st#* }" = "$p" ] && groups="$groups $p"; '
    '      case "$found" in *" $p "*) ;; *) found="$found$p ";; esac;; esac; done; '
    "  grew=1; while [ $grew = 1 ]; do grew=0; "
    '    for d in /proc/[0-9]*; do p=${d#/proc/}; case "$found" in *" $p "*) continue;; esac; '
    '      st=$(live_stat $p) || continue; case "$found" in *" ${st%% *} "*) found="$found$p "; grew=1;; esac; '
    "    done; "
    "  done; }; "
    # Each group in one call, then each process found; a few rounds catch what left or forked meanwhile. The
    # pause lets the dead be reaped before /proc is read again.
    "for round in 1 2 3; do victims; set -- $found; [ $# = 0 ] && break; "
    "  for g in $groups; do kill -KILL -$g 2>/dev/null; done; "
    "  kill -KILL $found 2>/dev/null; killed=$((killed + $#)); "
    "  sleep 0.3 2>/dev/null || true; done; "
    'rm -f "/tmp/.ah-exec-$k"; echo $killed'
)

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# dash's builtins (dash(1)): an argv naming one runs as the builtin, in the wrapper, even where a program of that
# name exists (echo, printf, test, kill, pwd...).
_BUILTINS = frozenset(
    ". : [ alias bg break cd chdir command continue echo eval exec exit export false fc fg getopts hash jobs kill"
    " local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset wait".split()
)


def runs_unwrapped(argv: list[str], stdin: bytes | None) -> bool:
    """Whether an engine that sets an exec's env and workdir itself may start ``argv`` as it is, with the env,
    ``WrappedExec.env`` and the workdir set on the exec: with no input to hand over and a program (not a builtin)
    to run, the wrapper would only look the program up and ``exec`` it, and under gVisor its shell costs an
    exec 4–24 ms. When the engine cannot start the program (no such program or workdir), the exec has no
    process; the engine then runs it through the wrapper, which says why in its own words."""
    return stdin is None and bool(argv) and argv[0] not in _BUILTINS


@dataclass(frozen=True)
class WrappedExec:
    """What a backend runs: ``argv`` with ``env`` in its environment and ``stdin`` as its whole input (None:
    attach none, the wrapper reads end of file at once); ``key`` names it to the killer. An engine that cannot
    set an exec's environment runs ``argv_with_env`` instead."""

    key: str
    argv: list[str]
    stdin: bytes | None

    @property
    def env(self) -> dict[str, str]:
        """The marker the killer finds the exec's processes by (it holds nothing secret)."""
        return {EXEC_MARKER: self.key}

    @property
    def argv_with_env(self) -> list[str]:
        return ["env", f"{EXEC_MARKER}={self.key}", *self.argv]


def _quoted(value: str) -> str:
    """One shell word on one line: single-quoted, a quote as '\\'', a newline as the wrapper's $AGENTHOST_NL."""
    return "'" + value.replace("'", "'\\''").replace("\n", "'\"$AGENTHOST_NL\"'") + "'"


def env_line(env: dict[str, str] | None) -> bytes:
    """The first line of the wrapper's stdin. Raises: InvalidInput for a key or value a process env cannot hold."""
    pairs = []
    for key, value in (env or {}).items():
        if not _KEY.fullmatch(key) or key.startswith("AGENTHOST_"):
            raise InvalidInput(f"invalid env var name {key!r}", "letters, digits and '_', not AGENTHOST_*")
        if "\x00" in value:
            raise InvalidInput(f"env var {key!r} holds a NUL byte", "env values are text: encode binary data")
        pairs.append(f"{key}={_quoted(value)}")
    return (" ".join(pairs) + "\n").encode()


def wrap(argv: list[str], stdin: bytes | None, env: dict[str, str] | None, workdir: str | None) -> WrappedExec:
    """The wrapped command. Raises: InvalidInput for an empty argv or an env ``env_line`` refuses."""
    if not argv:
        raise InvalidInput("command is empty", "pass an argv list or a shell string")
    key = new_key()
    # Nothing to read: no stdin at all, as fast as an exec without one.
    feed = None if stdin is None and not env else env_line(env) + (stdin or b"")
    size = "-" if feed is None else str(len(stdin or b""))
    return WrappedExec(key, ["/bin/sh", "-c", WRAPPER, key, size, workdir or "", *argv], feed)


def new_key() -> str:
    """A fresh exec key (the marker's value, and the name of the exec's files in /tmp)."""
    return uuid.uuid4().hex[:16]


def prepared_argv(key: str) -> list[str]:
    """What a backend starts ahead of a command, with ``key`` as the marker in its environment and stdin open."""
    return ["/bin/sh", "-c", PREPARED_WRAPPER, key]


def prepared_killer_argv() -> list[str]:
    """Kills the prepared execs waiting in a workload (see ``PREPARED_KILLER``); prints how many."""
    return ["/bin/sh", "-c", PREPARED_KILLER, "ah-kill-prepared"]


def prepared_request(wrapped: WrappedExec) -> tuple[bytes, bytes] | None:
    """All that a prepared exec needs to run ``wrapped`` (made by ``wrap``), written to its stdin: one line of the
    wrapper's words after a fresh nonce, then the wrapper's own stdin; and the acknowledgement the exec writes on
    its stdout once it has taken that request, before the command's output. An exec that ends, or writes anything
    else, first has not run it (a tenant's process ended the exec or wrote into its input), and the platform runs
    the command through the engine's own exec. None when it cannot take the request: a line longer than
    ``PREPARED_MAX_LINE``, or a NUL, which no argv can hold (the engine's exec then says so as before)."""
    nonce = uuid.uuid4().hex
    words = [nonce, *wrapped.argv[4:]]  # after /bin/sh -c WRAPPER key: the input's size, the workdir, the argv
    line = (" ".join(_quoted(w) for w in words) + "\n").encode()
    if len(line) > PREPARED_MAX_LINE or b"\x00" in line:
        return None
    return line + (wrapped.stdin or b""), f"agenthost-took {nonce}\n".encode()


def session_wrap(argv: list[str], term: str | None, size: tuple[int, int] | None = None) -> WrappedExec:
    """An interactive session's command, its stdin streamed (``stdin`` of the result is None); with ``term``
    it runs on a terminal of ``size`` (columns, rows) made inside the workload. Raises: InvalidInput."""
    if not argv:
        raise InvalidInput("command is empty", "pass an argv list or a shell string")
    key = new_key()
    if term is None:
        return WrappedExec(key, ["/bin/sh", "-c", SESSION_WRAPPER, key, "", *argv], None)
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,64}", term):
        term = "xterm"  # a client's odd TERM is not passed to a shell verbatim
    cols, rows = size or (80, 24)
    setup = f"tty > /tmp/.ah-pty-{key} 2>/dev/null; stty cols {int(cols)} rows {int(rows)} 2>/dev/null"
    inner = f"{setup}; exec {shlex.join(argv)}"
    return WrappedExec(
        key, ["/bin/sh", "-c", SESSION_WRAPPER, key, term, "/bin/sh", "-c", PTY_WRAPPER, "ah-pty", inner, *argv], None
    )


def resize_argv(key: str, cols: int, rows: int) -> list[str]:
    """Sets the size of session ``key``'s terminal; the kernel tells its foreground processes (SIGWINCH)."""
    return [
        "/bin/sh",
        "-c",
        'p=$(cat "/tmp/.ah-pty-$0") && stty -F "$p" cols "$1" rows "$2"',
        key,
        str(int(cols)),
        str(int(rows)),
    ]


def killer_argv(key: str) -> list[str]:
    """Kills every process of the exec ``key``; prints how many."""
    return ["/bin/sh", "-c", KILLER, "ah-kill", key]


def killed_count(output: str) -> int:
    """The killer's answer (0 when it printed none)."""
    try:
        return int(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def check_workdir(exit_code: int | None, stdout_bytes: int, stderr: str, workdir: str | None) -> None:
    """Raises: InvalidInput when the wrapper said the workdir does not exist (and the command never ran)."""
    if exit_code == WORKDIR_MISSING and stderr.startswith("agenthost: workdir ") and not stdout_bytes:
        raise InvalidInput(f"workdir {workdir!r} does not exist in the workload", "pass an existing absolute path")
