"""10,000 events from 8 threads arrive exactly once, with exact decimals."""

from __future__ import annotations

import threading
from decimal import Decimal

import agenttally

from conftest import Collector

THREADS = 8
PER_THREAD = 1_250


def cost_of(i: int) -> Decimal:
    # Ten significant decimals: exact in the wire format and NUMERIC, not in a float.
    return Decimal(i) * Decimal("0.0000012345") + Decimal("0.1")


def test_threads_exactly_once(collector: Collector, tenant: str) -> None:
    with agenttally.Client(endpoint=collector.endpoint, api_key=collector.api_key) as client:
        ids: list[list[str]] = [[] for _ in range(THREADS)]
        start = threading.Barrier(THREADS)

        def work(t: int) -> None:
            start.wait()
            for j in range(PER_THREAD):
                i = t * PER_THREAD + j
                ids[t].append(
                    client.track(
                        "provider.api_call",
                        tenant_id=tenant,
                        provider="openai",
                        model="gpt-4o",
                        cost_usd=cost_of(i),
                        usage={"input_tokens": 10, "output_tokens": i % 7},
                        metadata={"i": i, "thread": t},
                    )
                )

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        client.flush(timeout=60)
        stats = client.stats()

    total = THREADS * PER_THREAD
    all_ids = [i for chunk in ids for i in chunk]
    assert len(set(all_ids)) == total
    assert stats.accepted == total
    assert stats.sent == total, stats
    assert stats.duplicates == 0 and stats.rejected == 0
    assert stats.dropped.total() == 0
    # Delivered: nothing in flight; the adaptive limit stays within 1..=max_in_flight (16).
    assert stats.requests_in_flight == 0
    assert 1 <= stats.in_flight_limit <= 16, stats.in_flight_limit
    assert f"in_flight_limit={stats.in_flight_limit}" in repr(stats)

    expected = sum((cost_of(i) for i in range(total)), Decimal(0))
    rep = collector.report(tenant)
    assert rep.providers["openai"].calls == total
    assert rep.providers["openai"].cost_usd == expected.quantize(Decimal("0.000001"))

    rows = collector.query(
        f"SELECT count(*), count(DISTINCT id), sum(cost_usd) FROM events "
        f"WHERE tenant_id = '{tenant}'"
    )
    count, distinct, cost_sum = rows[0]
    assert int(count) == total and int(distinct) == total
    assert Decimal(cost_sum) == expected
    # One row per id that track() returned.
    stored = {r[0] for r in collector.query(f"SELECT id FROM events WHERE tenant_id = '{tenant}'")}
    assert stored == set(all_ids)
