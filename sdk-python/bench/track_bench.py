"""Per-call cost of ``Client.track`` against the analytics clients Python services use today.

One process, the same payload for every client, every client's sends pointed at a closed local
port (so only the call itself is measured, plus whatever the client's background thread costs).
Not run in CI. Needs ``pip install posthog segment-analytics-python`` in the same venv.

    python bench/track_bench.py [calls]
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
import threading
import time
from decimal import Decimal
from typing import Any, Callable

import agenttally

PROPS: dict[str, Any] = {
    "agent_id": "bugfix-agent",
    "task_type": "bug_fix",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 1_200,
    "output_tokens": 300,
    "cost_usd": "0.006",
}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def per_call_us(fn: Callable[[int], None], calls: int) -> float:
    for i in range(min(calls // 10, 10_000)):  # warm-up
        fn(i)
    gc.collect()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for i in range(calls):
                fn(i)
            best = min(best, time.perf_counter() - t0)
    finally:
        gc.enable()
    return best / calls * 1e6


def bench_agenttally(calls: int, port: int) -> tuple[float, agenttally.Client]:
    client = agenttally.Client(
        endpoint=f"http://127.0.0.1:{port}",
        overflow="drop_oldest",
        max_queue_events=1 << 20,
        max_queue_bytes=1 << 31,
        exit_timeout=0,
    )
    usage = {"input_tokens": PROPS["input_tokens"], "output_tokens": PROPS["output_tokens"]}
    cost = Decimal(PROPS["cost_usd"])

    def one(i: int) -> None:
        client.track(
            "provider.api_call",
            tenant_id="acme",
            agent_id=PROPS["agent_id"],
            task_type=PROPS["task_type"],
            provider=PROPS["provider"],
            model=PROPS["model"],
            usage=usage,
            cost_usd=cost,
        )

    return per_call_us(one, calls), client


def bench_posthog(calls: int, port: int) -> float:
    from posthog import Posthog

    ph = Posthog(
        "phc_bench", host=f"http://127.0.0.1:{port}", max_queue_size=10_000_000, max_retries=0
    )
    try:
        ph.capture("agent_call", distinct_id="acme", properties=PROPS)
        new_api = True
    except TypeError:
        new_api = False

    def one(i: int) -> None:
        if new_api:
            ph.capture("agent_call", distinct_id="acme", properties=PROPS)
        else:
            ph.capture("acme", "agent_call", PROPS)

    us = per_call_us(one, calls)
    ph.disabled = True
    return us


def bench_segment(calls: int, port: int) -> float:
    from segment.analytics import Client

    sc = Client("bench", host=f"http://127.0.0.1:{port}", max_queue_size=10_000_000, max_retries=0)

    def one(i: int) -> None:
        sc.track(user_id="acme", event="agent_call", properties=PROPS)

    us = per_call_us(one, calls)
    sc.send = False
    return us


def threaded_rate(client: agenttally.Client, threads: int, per_thread: int) -> float:
    usage = {"input_tokens": 1_200, "output_tokens": 300}
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(per_thread):
            client.track(
                "provider.api_call",
                tenant_id="acme",
                provider="openai",
                model="gpt-4o",
                usage=usage,
                cost_usd=Decimal("0.006"),
            )

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return threads * per_thread / (time.perf_counter() - t0)


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    logging.disable(logging.CRITICAL)  # the other clients log every failed send
    port = closed_port()
    ours, client = bench_agenttally(calls, port)
    posthog = bench_posthog(calls, port)
    segment = bench_segment(calls, port)
    rate = threaded_rate(client, 8, calls // 8)
    print(f"calls per client: {calls} (best of 3), sends to closed port 127.0.0.1:{port}")
    print(f"agenttally Client.track    {ours:8.2f} us/call")
    print(f"posthog Posthog.capture    {posthog:8.2f} us/call   ratio {posthog / ours:6.1f}x")
    print(f"segment Client.track       {segment:8.2f} us/call   ratio {segment / ours:6.1f}x")
    print(f"agenttally track, 8 threads: {rate:,.0f} calls/s aggregate")
    try:
        client.shutdown(timeout=0)
    except agenttally.TimeoutError:
        pass  # nothing can be delivered to a closed port; the queue is dropped


if __name__ == "__main__":
    main()
