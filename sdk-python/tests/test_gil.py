"""Waiting never holds the GIL: other threads run during flush(), other tasks during aflush()."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest

import agenttally


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join()
    for c in conns:
        c.close()
    srv.close()


def test_flush_releases_the_gil(slow_endpoint: str) -> None:
    client = agenttally.Client(endpoint=slow_endpoint, request_timeout=30, exit_timeout=0)
    client.track("agent.created", tenant_id="acme", agent_id="a")
    count = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal count
        while not done.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    time.sleep(0.05)
    before = count
    started = time.monotonic()
    with pytest.raises(agenttally.TimeoutError):
        client.flush(timeout=1.0)
    waited = time.monotonic() - started
    during = count - before
    done.set()
    t.join()
    assert waited >= 0.95
    # A thread that got the GIL for the whole wait counts millions; 100k is a floor no
    # GIL-holding wait would let it reach.
    assert during > 100_000, during
    client.shutdown(timeout=0)


def test_aflush_does_not_block_the_loop(slow_endpoint: str) -> None:
    async def main() -> tuple[int, float]:
        client = agenttally.Client(endpoint=slow_endpoint, request_timeout=30, exit_timeout=0)
        client.track("agent.created", tenant_id="acme", agent_id="a")
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        with pytest.raises(agenttally.TimeoutError):
            await client.aflush(timeout=1.0)
        waited = time.monotonic() - started
        stop = True
        await task
        await client.ashutdown(timeout=0)
        return ticks, waited

    ticks, waited = asyncio.run(main())
    assert waited >= 0.95
    assert ticks >= 50, ticks  # ~100 ticks of 10 ms in 1 s: the loop kept running
