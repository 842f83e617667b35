"""Transactional enqueue from sync code (Django, Flask, scripts) with psycopg.

The job is inserted in the same transaction as the application's own write: it exists (and
its wake-up notification is sent) only if that transaction commits.
"""

from __future__ import annotations

from typing import ClassVar

import psycopg

import river
from river import dev
from river.migrate import Migrator


class SendInvoice(river.JobArgs):
    kind: ClassVar[str] = "send_invoice"
    order_id: int


def main() -> None:
    url = dev.database_url()
    client = river.Client()  # no pool needed: every call below uses the caller's connection
    with psycopg.connect(url) as conn:
        # Outside any transaction: the migrator runs each version in a transaction of its own
        # (versions 4 and 6 cannot share one).
        Migrator(conn).migrate_up()
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS shop_order (id bigint PRIMARY KEY)")
            conn.execute("DELETE FROM shop_order")
        with conn.transaction():
            conn.execute("INSERT INTO shop_order (id) VALUES (1)")
            result = client.insert_tx(conn, SendInvoice(order_id=1))
            print(f"order 1 and job {result.job.id} committed together")

        try:
            with conn.transaction():
                conn.execute("INSERT INTO shop_order (id) VALUES (2)")
                client.insert_tx(conn, SendInvoice(order_id=2))
                raise RuntimeError("payment declined")
        except RuntimeError:
            pass
        jobs = client.job_list_tx(conn, river.JobListParams(kinds=["send_invoice"]))
        orders = [a["order_id"] for a in (j.args for j in jobs.jobs)]
        print(f"jobs for orders {orders}: the rolled-back order left no job behind")
        assert 2 not in orders
        conn.execute("DROP TABLE shop_order")
        conn.commit()


if __name__ == "__main__":
    main()
