# Sourced by the infra scripts: start a daemon in the background, detached from this shell, and know it again.
# spawn PIDFILE LOG COMMAND...  (PIDFILE may be "-": no pid file)
# The daemon keeps none of this shell's descriptors above 2: started under `flock /tmp/e2e.lock`, it would
# otherwise hold the lock for as long as it runs, and the next `flock` would wait forever.
#
# Beside PIDFILE, PIDFILE.start holds the process's start time (field 22 of /proc/PID/stat, which an exec
# keeps). A pid alone names whatever has it now: once the daemon is gone its pid goes to the next process or
# thread (pid_max is 32768 on the test machine, and a test run goes through it), and kill -0 answers for a
# thread's id too. `spawned` and `kill_spawned` act only on the process spawn started.
spawn() {
  local pidfile="$1" log="$2"; shift 2
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid "$@" </dev/null >"$log" 2>&1
  ) &
  if [ "$pidfile" != - ]; then
    echo $! >"$pidfile"
    start_time $! >"$pidfile.start"
  fi
}

start_time() {  # PID -> its start time; nothing when no live process has that pid (a thread's id has its own)
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"  # the fields after the command name, which may hold spaces: field 3 (state) onwards
  # shellcheck disable=SC2086
  set -- $stat
  [ "$1" = Z ] || echo "${20}"  # a zombie has exited
}

spawned() {  # PIDFILE: true while the process spawn started runs
  [ -f "$1" ] && [ -f "$1.start" ] || return 1
  local start; start="$(cat "$1.start")"
  [ -n "$start" ] && [ "$(start_time "$(cat "$1")")" = "$start" ]
}

kill_spawned() {  # PIDFILE: stop the process spawn started (TERM, then KILL after 30 s); forget it either way
  if spawned "$1"; then
    local pid; pid="$(cat "$1")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 60); do spawned "$1" || break; sleep 0.5; done
    spawned "$1" && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$1" "$1.start"
}
