# Sourced by the infra scripts: start a daemon in the background, detached from this shell.
# spawn PIDFILE LOG COMMAND...  (PIDFILE may be "-": no pid file)
# The daemon keeps none of this shell's descriptors above 2: started under `flock /tmp/e2e.lock`, it would
# otherwise hold the lock for as long as it runs, and the next `flock` would wait forever.
spawn() {
  local pidfile="$1" log="$2"; shift 2
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd="${fd##*/}"
      [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid "$@" </dev/null >"$log" 2>&1
  ) &
  if [ "$pidfile" != - ]; then echo $! >"$pidfile"; fi
}
