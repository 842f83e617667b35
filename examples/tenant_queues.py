"""One queue per tenant, each rate-limited across the cluster, added and removed at runtime.

The pattern of docs/queues.md ("Per-tenant queues"): every tenant gets its own queue, so a
tenant that floods its queue cannot delay the others, and a rate limit per queue (say, what the
tenant's plan allows against a partner API) that holds for every process working it. Queues
are added when tenants sign up and removed when they leave, while the client runs; the idle
cost stays flat (one poll query per tick for all queues).

    DATABASE_URL=postgresql://... python examples/tenant_queues.py [--tenants 1000]

Prints what it did, the start rate of a flooded tenant against its limit, and the database
transactions per second of the idle client with all the queues.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import psycopg

import river
from river import QueueConfig, RateLimit


class SyncTenantData(river.JobArgs):
    kind: ClassVar[str] = "sync_tenant_data"
    tenant: str
    page: int


class SyncTenantWorker(river.Worker[SyncTenantData]):
    def __init__(self) -> None:
        self.started: Counter[str] = Counter()
        self.changed = asyncio.Event()

    async def work(self, job: river.Job[SyncTenantData]) -> None:
        self.started[job.args.tenant] += 1  # here: call the partner API for this tenant
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()


def tenant_queue(tenant: str) -> str:
    return f"tenant_{tenant}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    with psycopg.connect(url, autocommit=True) as conn:
        river.Migrator(conn).migrate_up()

    worker = SyncTenantWorker()
    workers = river.Workers()
    workers.add(worker)
    # Each tenant's plan: 5 jobs per second, whatever the number of processes working it.
    plan = QueueConfig(max_workers=5, rate_limit=RateLimit(jobs=5, per=1))
    client = river.AsyncClient(url, river.Config(workers=workers, queues={}))
    async with client:
        await client.start()
        started = time.monotonic()
        tenants = [f"t{i:04d}" for i in range(args.tenants)]
        for tenant in tenants:  # tenants signing up while the client runs
            await client.queues.add(tenant_queue(tenant), plan)
        print(f"added {len(tenants)} tenant queues in {time.monotonic() - started:.1f}s")

        # One tenant floods its queue; two others insert a little. The flood does not delay
        # them, and it starts no faster than its limit.
        flooded, quiet = tenants[0], tenants[1:3]
        await client.insert_many(
            [
                (
                    SyncTenantData(tenant=flooded, page=p),
                    river.InsertOpts(queue=tenant_queue(flooded)),
                )
                for p in range(20)
            ]
            + [
                (SyncTenantData(tenant=t, page=0), river.InsertOpts(queue=tenant_queue(t)))
                for t in quiet
            ]
        )
        t0 = time.monotonic()
        await worker.until(lambda: all(worker.started[t] for t in quiet))
        print(f"quiet tenants started in {time.monotonic() - t0:.2f}s despite the flood")
        await worker.until(lambda: worker.started[flooded] >= 20)
        elapsed = time.monotonic() - t0
        print(
            f"flooded tenant: 20 jobs in {elapsed:.1f}s = {20 / elapsed:.1f} jobs/s "
            f"(limit 5/s, burst {plan.rate_limit.capacity if plan.rate_limit else 0})"
        )

        # Idle cost with every queue: transactions per second on the database.
        async def commits() -> int:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                cur = await conn.execute(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                )
                row = await cur.fetchone()
                assert row is not None
                return int(row[0])

        before = await commits()
        await asyncio.sleep(3)
        after = await commits()
        # Two of those transactions are this measurement's own.
        print(f"idle with {len(tenants)} queues: {(after - before - 2) / 3:.1f} transactions/s")

        for tenant in tenants[-10:]:  # tenants leaving
            await client.queues.remove(tenant_queue(tenant))
        print(f"removed 10 tenants; {len(client.queues.list())} queues left")
        await client.stop()


if __name__ == "__main__":
    asyncio.run(main())
