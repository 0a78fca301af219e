"""service_logs through a real MCP client: pages after a cursor, following as progress, and the previous run."""

from __future__ import annotations

import re

import pytest

from .harness import AgentHost, ToolFailed, call, connect, until, untrusted_body

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

TICKER = ["sh", "-c", "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line-$i; sleep 0.1; done; exit 0"]
# Each run counts itself on a volume, says so, and crashes: Docker restarts it in the same container.
CRASHER = [
    "sh",
    "-c",
    "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo run-$n; sleep 1; exit 3",
]


def numbers(output: str, word: str) -> list[int]:
    return [int(n) for n in re.findall(rf"^{word}-(\d+)$", untrusted_body(output), re.MULTILINE)]


async def test_logs_page_after_a_cursor_and_follow_to_the_end(
    agenthost: AgentHost, hello_image: str, transport: str
) -> None:
    key = agenthost.tenant(f"logs-page-{transport}")
    progress: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with connect(agenthost, key, transport) as client:
        await call(client, "deploy_service", {"name": "ticker", "image": hello_image, "command": TICKER})
        first = await until(client, "service_logs", {"service": "ticker", "tail": 3}, lambda o: o["lines"] == 3)
        seen = numbers(first["output"], "line")
        assert len(seen) == 3 and seen == list(range(seen[0], seen[0] + 3)), first
        assert first["next_cursor"], first

        # Everything after the cursor, once each: what was there already, then new lines as they come.
        args = {"service": "ticker", "cursor": first["next_cursor"], "follow": True, "tail": 5000}
        rest = await call(client, "service_logs", args, progress_callback=on_progress)
        assert numbers(rest["output"], "line") == list(range(seen[-1] + 1, 41)), rest
        followed = [int(m.removeprefix("line-")) for m in progress if m.startswith("line-")]
        assert followed == list(range(41 - len(followed), 41)), progress

        # Pages of 10 after the first cursor: consecutive, no line twice, none left out.
        cursor, got = first["next_cursor"], []
        for _ in range(10):
            page = await call(client, "service_logs", {"service": "ticker", "cursor": cursor, "tail": 10})
            got += numbers(page["output"], "line")
            cursor = page["next_cursor"]
            if not page["truncated"]:
                break
        assert got == list(range(seen[-1] + 1, 41)), got
        empty = await call(client, "service_logs", {"service": "ticker", "cursor": cursor})
        assert empty["lines"] == 0 and empty["next_cursor"] == cursor, empty

        for bad in ("yesterday", "2026-01-01T00:00:00~x", "2026-01-01T00:00:00~1"):
            with pytest.raises(ToolFailed) as err:
                await call(client, "service_logs", {"service": "ticker", "cursor": bad})
            assert err.value.code == "invalid_input" and "cursor" in err.value.message, (bad, err.value)
        with pytest.raises(ToolFailed) as err:
            await call(client, "service_logs", {"service": "ticker", "cursor": cursor, "since": 60})
        assert err.value.code == "invalid_input", err.value
        await call(client, "delete_service", {"service": "ticker", "confirm": True})


async def test_previous_is_the_output_of_the_runs_before_the_last_restart(
    agenthost: AgentHost, hello_image: str
) -> None:
    key = agenthost.tenant("logs-previous")
    async with connect(agenthost, key, "http") as client:
        await call(client, "deploy_service", {"name": "steady", "image": hello_image, "port": 8000})
        with pytest.raises(ToolFailed) as err:
            await call(client, "service_logs", {"service": "steady", "previous": True})
        assert err.value.code == "invalid_input" and "has not restarted" in err.value.message, err.value

        volume = {"name": "count", "path": "/data"}
        crasher = {
            "name": "crasher",
            "image": hello_image,
            "command": CRASHER,
            "volumes": [volume],
            "user": "0",
            "wait": False,
        }
        await call(client, "deploy_service", crasher)
        # Once the crash loop is over (the breaker opened), the last run's output is the tail's, the runs before
        # it are previous's.
        await until(client, "get_service", {"service": "crasher"}, lambda s: s["status"] == "failed", 120)
        previous = await call(client, "service_logs", {"service": "crasher", "previous": True})
        before = numbers(previous["output"], "run")
        assert len(before) >= 2 and before == list(range(1, len(before) + 1)), previous["output"]
        now = await call(client, "service_logs", {"service": "crasher"})
        assert numbers(now["output"], "run") == [*before, len(before) + 1], now["output"]
        for name in ("steady", "crasher"):
            await call(client, "delete_service", {"service": name, "confirm": True})
