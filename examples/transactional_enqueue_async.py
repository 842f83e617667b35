"""Transactional enqueue from async code with psycopg's AsyncConnection."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import psycopg

import river
from river import dev
from river.migrate import AsyncMigrator


class ShipOrder(river.JobArgs):
    kind: ClassVar[str] = "ship_order"
    order_id: int


async def main() -> None:
    url = dev.database_url()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        # Outside any transaction: the migrator runs each version in a transaction of its own
        # (versions 4 and 6 cannot share one).
        await AsyncMigrator(conn).migrate_up()
        client = river.AsyncClient(url)  # its own pool is only opened if used
        async with conn.transaction():
            results = await client.insert_many_tx(conn, [ShipOrder(order_id=n) for n in range(3)])
            print(f"inserted jobs {[r.job.id for r in results]} in the caller's transaction")
        try:
            async with conn.transaction():
                await client.insert_tx(conn, ShipOrder(order_id=99))
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        page = await client.job_list_tx(conn, river.JobListParams(kinds=["ship_order"]))
        assert all(j.args["order_id"] != 99 for j in page.jobs)
        print(f"{len(page.jobs)} ship_order jobs exist; the aborted one does not")
        await client.close()


if __name__ == "__main__":
    asyncio.run(main())
