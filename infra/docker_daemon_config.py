#!/usr/bin/env python3
"""Merge agenthost's runtimes into dockerd's daemon.json, keeping whatever else is there.

runsc becomes the default runtime, so that the RUN steps of builds (Docker's build API cannot name a
runtime) run under gVisor; agenthost's own containers always name theirs. A default the operator
set in daemon.json (runc included) is kept. dockerd takes both on a reload (SIGHUP); running containers
keep the runtime they started with.

Exit status: 0 unchanged, 10 changed (dockerd must reload), 1 error.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

RUNTIMES = {
    # Debian's runsc needs the host network stack of the container's own namespace (docs/operations.md).
    "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=host"]},
}
OPTIONAL = {"sysbox-runc": {"path": "/usr/bin/sysbox-runc"}}
DEFAULT_RUNTIME = "runsc"


def main(path: Path) -> int:
    config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    runtimes = config.setdefault("runtimes", {})
    before = json.dumps(config, sort_keys=True)
    runtimes.update(RUNTIMES)
    config.setdefault("default-runtime", DEFAULT_RUNTIME)
    if config["default-runtime"] != DEFAULT_RUNTIME:
        sys.stderr.write(f"keeping default-runtime {config['default-runtime']!r}: build RUN steps run without gVisor\n")
    for name, spec in OPTIONAL.items():
        if shutil.which(name):
            runtimes[name] = spec
    if json.dumps(config, sort_keys=True) == before:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return 10


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "/etc/docker/daemon.json")))
