"""The HTTPS proxy's cost: GETs to a service through Caddy (TLS, host routing) vs straight to the container's
published port, side by side in one run.

Both sides use one keep-alive connection and the same requests, one at a time, and then 8 clients at
once for requests/s. Prints p50 and p99 latency, requests/s and the ratios.

    .venv/bin/python bench/ingress.py [requests]
"""

from __future__ import annotations

import asyncio
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import BIN, Platform, build_hello, free_port, tool  # noqa: E402

DOMAIN = "bench.localhost"
CLIENTS = 8


def timed(client: httpx.Client, url: str, n: int, headers: dict[str, str], sni: str | None) -> list[float]:
    extensions = {"sni_hostname": sni} if sni else {}
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, headers=headers, extensions=extensions)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200 and response.text == "ok", (response.status_code, response.text[:200])
    return samples


def throughput(make: Callable[[], httpx.Client], url: str, n: int, headers: dict[str, str], sni: str | None) -> float:
    """Requests/s with CLIENTS threads, each on its own keep-alive connection, n requests each."""

    def one() -> None:
        with make() as client:
            timed(client, url, n, headers, sni)

    threads = [threading.Thread(target=one) for _ in range(CLIENTS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return CLIENTS * n / (time.perf_counter() - started)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(n: int) -> None:
    engine = docker.from_env()
    image = build_hello(engine)
    https_port, http_port = free_port(), free_port()
    platform = Platform(
        AGENTHOST_INGRESS="true",
        AGENTHOST_BASE_DOMAIN=DOMAIN,
        AGENTHOST_INGRESS_INTERNAL_CA="true",
        AGENTHOST_INGRESS_BIND="127.0.0.1",
        AGENTHOST_INGRESS_HTTPS_PORT=str(https_port),
        AGENTHOST_INGRESS_HTTP_PORT=str(http_port),
    )
    log = open(platform.dir / "ingress.log", "ab")  # noqa: SIM115
    caddy = subprocess.Popen([str(BIN), "ingress", "run"], env=platform.env, stdout=log, stderr=log)
    try:
        async with platform.client() as client:
            svc = await tool(client, "deploy_service", {"name": "web", "image": image, "port": 8000})
        host = f"web-bench.{DOMAIN}"
        ca = platform.dir / "ingress" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        proxied = f"https://127.0.0.1:{https_port}/"
        headers = {"Host": f"{host}:{https_port}"}

        def via_proxy() -> httpx.Client:
            return httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=10)

        deadline = time.monotonic() + 60
        while True:  # Caddy issues the host's certificate once its route is loaded
            try:
                with via_proxy() as c:
                    if c.get(proxied, headers=headers, extensions={"sni_hostname": host}).status_code == 200:
                        break
            except (httpx.HTTPError, ssl.SSLError, FileNotFoundError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the proxy never answered; see " + str(platform.dir / "ingress.log"))
            time.sleep(0.2)

        direct = str(svc["internal_url"]) + "/"
        with via_proxy() as c:
            timed(c, proxied, 50, headers, host)  # warm both paths
            ours = timed(c, proxied, n, headers, host)
        with httpx.Client(timeout=10) as c:
            timed(c, direct, 50, {}, None)
            raw = timed(c, direct, n, {}, None)
        rps_ours = throughput(via_proxy, proxied, n // CLIENTS, headers, host)
        rps_raw = throughput(lambda: httpx.Client(timeout=10), direct, n // CLIENTS, {}, None)

        print(f"GET / through the proxy vs the container's port: n={n} sequential, then {CLIENTS} clients")
        for label, s, rps in (("proxy", ours, rps_ours), ("direct", raw, rps_raw)):
            print(
                f"  {label:<7} p50 {pct(s, 0.5):6.2f} ms  p99 {pct(s, 0.99):6.2f} ms  "
                f"mean {statistics.mean(s) * 1000:6.2f} ms  {rps:7.0f} req/s"
            )
        p50, p99 = pct(ours, 0.5) / pct(raw, 0.5), pct(ours, 0.99) / pct(raw, 0.99)
        print(f"  ratio proxy/direct: p50 {p50:.2f}, p99 {p99:.2f}")
        print(f"  ratio requests/s proxy/direct: {rps_ours / rps_raw:.2f}")
    finally:
        caddy.terminate()
        caddy.wait(10)
        platform.cleanup(engine)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
