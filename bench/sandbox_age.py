"""Whether a young sandbox's exec is slower for its age: containers with the sandbox's settings, each warmed once as
the warm pool does, then the command of bench/sandbox.py run once at an age of 1, 5, 20 and 60 s, each beside one
`exec_run` in a floor container that has run since the start. Nothing of agenthost runs here: it says what the
pool's policy (hand out the oldest warm container; hold the refill back after a claim) is up against.

Usage: .venv/bin/python bench/sandbox_age.py [ROUNDS]   (a round takes about a minute)
"""

from __future__ import annotations

import sys
import time

import docker
from sandbox import COMMAND, IMAGE, SANDBOX, raw_exec

from common import median_ms

AGES_S = (1.0, 5.0, 20.0, 60.0)
WARM_UP = ["python3", "-c", "pass"]  # the pool's default AGENTHOST_SANDBOX_POOL_WARMUP


def main(rounds: int) -> None:
    client = docker.from_env(version="auto")
    floor = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **SANDBOX)
    young: dict[float, list[float]] = {age: [] for age in AGES_S}
    old: dict[float, list[float]] = {age: [] for age in AGES_S}
    try:
        floor.exec_run(WARM_UP)
        for _ in range(rounds):
            started = time.monotonic()
            batch = []
            try:
                for _age in AGES_S:
                    container = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **SANDBOX)
                    batch.append(container)
                    container.exec_run(WARM_UP)
                for age, container in zip(AGES_S, batch, strict=True):
                    time.sleep(max(0.0, started + age - time.monotonic()))
                    old[age].append(raw_exec(floor))
                    young[age].append(raw_exec(container))
            finally:
                for container in batch:
                    container.remove(force=True)
    finally:
        floor.remove(force=True)
    print(f"one command ({' '.join(COMMAND)}) in a sandbox of a given age vs the floor, medians of {rounds}:")
    for age in AGES_S:
        m_young, m_old = median_ms(young[age]), median_ms(old[age])
        print(f"  {age:4.0f} s old: {m_young:7.1f} ms   floor {m_old:7.1f} ms   ratio {m_young / m_old:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
