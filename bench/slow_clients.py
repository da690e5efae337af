"""Page views while slow clients hold connections (issue 10, item 7).

Starts `cli.py serve` (embedded store, demo space) with short head/body deadlines, opens
slow-header and slow-body connections that never finish, and meanwhile sends assembles at a
steady concurrency. Reports assemble p50/p99/max and non-2xx, with and without the slow
clients, and when (and how) each slow connection was ended by the server.

    ./scripts/uv run --frozen python -m bench.slow_clients
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.core.server_process import free_port, serve

PAGE = {"template": "home", "user": {"anonymousId": "bench"}}
SLOW_BODY = (
    b"POST /v1/assemble HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
    b'Content-Length: 400\r\n\r\n{"template": '
)
SLOW_HEAD = b"POST /v1/assemble HTTP/1.1\r\nHost: b\r\nX-Slow: "


async def page_views(url: str, total: int, concurrency: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    queue = iter(range(total))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            nonlocal failures
            for _ in queue:
                started = time.perf_counter()
                try:
                    answer = await client.post("/v1/assemble", json=PAGE)
                    failures += answer.status_code >= 300
                except httpx.HTTPError:
                    failures += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, failures


async def slow_client(port: int, opening: bytes, ended: list[tuple[float, bytes]]) -> None:
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(opening)
    await writer.drain()
    with contextlib.suppress(OSError):
        head = await reader.read(64)
        ended.append((time.perf_counter() - started, head[:12]))
    writer.close()


def report(name: str, latencies: list[float], failures: int) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[int(len(ms) * 0.99) - 1]
    print(
        f"{name:<34} n={len(ms):5d} p50={statistics.median(ms):6.1f} ms "
        f"p99={p99:6.1f} ms max={ms[-1]:6.1f} ms non-2xx={failures}"
    )


async def main(slow: int = 400, total: int = 2000, concurrency: int = 8) -> None:
    env = {"BRIDGE_HEADER_TIMEOUT_SECONDS": "5", "BRIDGE_BODY_TIMEOUT_SECONDS": "5"}
    port = free_port()
    server = serve(Path(tempfile.mkdtemp()), port=port, env=env)
    try:
        report("no slow clients", *await page_views(server.url, total, concurrency))
        ended: list[tuple[float, bytes]] = []
        holders = [
            asyncio.create_task(slow_client(port, SLOW_BODY if i % 2 else SLOW_HEAD, ended))
            for i in range(slow)
        ]
        await asyncio.sleep(0.5)
        report(f"{slow} slow clients (deadline 5 s)", *await page_views(server.url, total, 8))
        await asyncio.gather(*holders)
        statuses = sorted({head.decode(errors="replace") for _, head in ended})
        print(
            f"slow clients ended by the server: {len(ended)}/{slow}, "
            f"latest after {max(t for t, _ in ended):.1f} s, answers {statuses}"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
