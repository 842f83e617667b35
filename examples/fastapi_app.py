"""A FastAPI app that shares one connection pool with its River client (docs/fastapi.md).

The app's lifespan opens the pool and starts the client on it (the client stops gracefully at
shutdown: running jobs finish, outcomes are written, then the pool closes). A request that
places an order writes the order and enqueues its confirmation job in one transaction: both
are committed, or neither is.

Run: `uvicorn examples.fastapi_app:app` (needs `pip install fastapi uvicorn`), or
`python examples/fastapi_app.py` for a self-test with an in-process HTTP client.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of routes defined
# inside create_app() at run time, and `Tx` is a local name there.
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, ClassVar

import psycopg
import pydantic
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse

import river
from river import dev
from river.contrib.asgi import AppPool
from river.migrate import Migrator

#: Widgets in stock: an order that would take more is refused, after its row was written.
STOCK = 10


class ConfirmOrder(river.JobArgs):
    kind: ClassVar[str] = "confirm_order"
    order_id: int


class OrderIn(pydantic.BaseModel):
    item: str
    quantity: int


def create_app(database_url: str) -> FastAPI:
    class ConfirmOrderWorker(river.Worker[ConfirmOrder]):
        async def work(self, job: river.Job[ConfirmOrder]) -> None:
            # The worker uses the app's pool too (e-mail the customer here, then record it).
            async with db.begin() as conn:
                await conn.execute(
                    "UPDATE orders SET confirmed = true WHERE id = %s", [job.args.order_id]
                )

    workers = river.Workers()
    workers.add(ConfirmOrderWorker())
    config = river.Config(queues={"orders": river.QueueConfig(max_workers=10)}, workers=workers)
    db = AppPool(database_url, config, max_size=20)  # above max_workers: requests keep connections
    client = db.client

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.lifespan(app):  # pool open, client started; at shutdown the reverse
            async with db.begin() as conn:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, "
                    "item text NOT NULL, quantity int NOT NULL, "
                    "confirmed boolean NOT NULL DEFAULT false)"
                )
            yield

    app = FastAPI(lifespan=lifespan)
    # One connection in one transaction per request; committed before the response is sent.
    Tx = Annotated[psycopg.AsyncConnection[Any], Depends(db.transaction, scope="function")]

    @app.post("/orders", status_code=201)
    async def place_order(order: OrderIn, conn: Tx) -> dict[str, int]:
        cur = await conn.execute(
            "INSERT INTO orders (item, quantity) VALUES (%s, %s) RETURNING id",
            [order.item, order.quantity],
        )
        row = await cur.fetchone()
        assert row is not None
        order_id = int(row[0])
        result = await client.insert_tx(
            conn, ConfirmOrder(order_id=order_id), river.InsertOpts(queue="orders")
        )
        # A check that needs the new row: raising rolls back the order *and* its job.
        cur = await conn.execute("SELECT sum(quantity) FROM orders WHERE item = %s", [order.item])
        total = await cur.fetchone()
        if total is not None and total[0] > STOCK:
            raise HTTPException(409, f"only {STOCK} {order.item}s in stock")
        return {"order_id": order_id, "job_id": result.job.id}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: int, conn: Tx) -> dict[str, Any]:
        cur = await conn.execute(
            "SELECT item, quantity, confirmed FROM orders WHERE id = %s", [order_id]
        )
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, "no such order")
        return {"item": row[0], "quantity": row[1], "confirmed": row[2]}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        # For the orchestrator's readiness probe: 503 while a background service of the
        # client keeps crashing (docs/reliability.md), so the app is restarted or taken out.
        health = client.health()
        body = {
            "healthy": health.healthy,
            "failed": health.failed,
            "restarts": {name: s.restarts for name, s in health.services.items()},
        }
        return JSONResponse(body, status_code=200 if health.healthy else 503)

    return app


def _database_url() -> str:
    url = dev.database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        Migrator(conn).migrate_up()
    return url


async def _count(conn: psycopg.AsyncConnection[Any], query: str) -> int:
    row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row else 0


async def self_test() -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    url = _database_url()
    jobs = "SELECT count(*) FROM river_job WHERE kind = 'confirm_order'"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS orders")  # this example's table: a clean slate
        jobs_before = await _count(conn, jobs)
    app = create_app(url)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            ok = await http.post("/orders", json={"item": "widget", "quantity": 3})
            print("POST /orders (3 widgets) ->", ok.status_code, sorted(ok.json()))
            assert ok.status_code == 201
            refused = await http.post("/orders", json={"item": "widget", "quantity": 50})
            print("POST /orders (50 widgets) ->", refused.status_code, refused.json()["detail"])
            assert refused.status_code == 409

            # The refused order left nothing behind: no row, no job.
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                new_orders = await _count(conn, "SELECT count(*) FROM orders")
                new_jobs = await _count(conn, jobs) - jobs_before
            print(f"committed: {new_orders} order and {new_jobs} job; the refused order, neither")
            assert (new_orders, new_jobs) == (1, 1)

            order_id = ok.json()["order_id"]
            for _ in range(500):
                if (await http.get(f"/orders/{order_id}")).json()["confirmed"]:
                    break
                await asyncio.sleep(0.01)
            order = (await http.get(f"/orders/{order_id}")).json()
            print(f"GET /orders/{order_id} ->", order)
            assert order["confirmed"]

            health = await http.get("/healthz")
            print("GET /healthz ->", health.status_code, health.json()["failed"])
            assert health.status_code == 200


if __name__ == "__main__":
    asyncio.run(self_test())
else:
    app = create_app(_database_url()) if __name__ == "examples.fastapi_app" else None
