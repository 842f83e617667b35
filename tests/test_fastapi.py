"""Transactional enqueue from a web request (issue 15, docs/fastapi.md): river.contrib.asgi's
AppPool in a FastAPI app and a plain Starlette app, driven in-process through httpx's ASGI
transport (with the app's lifespan run by asgi-lifespan) against a real Postgres.

A route writes an order and enqueues its job on the request's connection: a commit keeps both,
an HTTPException or any other error rolls back both, and a commit that fails is not reported
as a success. The app's client works the job on the app's own pool, and the pool bounds the
connections of requests and client together.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time,
# and they name `Tx`, a local of fastapi_app().
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, ClassVar

import anyio
import httpx
import psycopg
import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import river
from river.contrib.asgi import AppPool

pytestmark = pytest.mark.anyio


class ConfirmOrder(river.JobArgs):
    kind: ClassVar[str] = "confirm_order"
    order_id: int


class ConfirmOrderWorker(river.Worker[ConfirmOrder]):
    def __init__(self, expect: int = 1) -> None:
        self.done: set[int] = set()
        self.expect = expect
        self.event = anyio.Event()  # set once `expect` orders are confirmed

    async def work(self, job: river.Job[ConfirmOrder]) -> None:
        self.done.add(job.args.order_id)
        if len(self.done) >= self.expect:
            self.event.set()


@pytest.fixture
def orders_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # The deferred unique constraint is checked at COMMIT: a way to make a commit fail.
        conn.execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL, "
            "ref text UNIQUE DEFERRABLE INITIALLY DEFERRED)"
        )
    return db_url


def counts(url: str) -> tuple[int, int]:
    """(orders, confirm_order jobs) as committed."""
    with psycopg.connect(url, autocommit=True) as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        jobs = conn.execute(
            "SELECT count(*) FROM river_job WHERE kind = 'confirm_order'"
        ).fetchone()
    assert orders is not None
    assert jobs is not None
    return int(orders[0]), int(jobs[0])


async def place(conn: psycopg.AsyncConnection[Any], client: river.AsyncClient, ref: str) -> int:
    """What a route does: its own row, then the job, on the request's connection."""
    cur = await conn.execute(
        "INSERT INTO orders (item, ref) VALUES ('widget', %s) RETURNING id", [ref]
    )
    row = await cur.fetchone()
    assert row is not None
    await client.insert_tx(conn, ConfirmOrder(order_id=int(row[0])))
    return int(row[0])


def config(worker: ConfirmOrderWorker) -> river.Config:
    workers = river.Workers()
    workers.add(worker)
    return river.Config(queues={"default": river.QueueConfig(max_workers=4)}, workers=workers)


def fastapi_app(db: AppPool) -> FastAPI:
    app = FastAPI(lifespan=db.lifespan)
    Tx = Annotated[psycopg.AsyncConnection[Any], Depends(db.transaction, scope="function")]

    @app.post("/orders/{ref}", status_code=201)
    async def create(ref: str, conn: Tx) -> dict[str, int]:
        return {"order_id": await place(conn, db.client, ref)}

    @app.post("/orders/{ref}/refused")
    async def refused(ref: str, conn: Tx) -> None:
        await place(conn, db.client, ref)
        raise HTTPException(409, "refused after the insert")

    @app.post("/orders/{ref}/crash")
    async def crash(ref: str, conn: Tx) -> None:
        await place(conn, db.client, ref)
        raise RuntimeError("a bug after the insert")

    return app


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        # raise_app_exceptions=False: an unhandled error is a 500, as a server would answer.
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


# --------------------------------------------------------------------------------------------
# FastAPI
# --------------------------------------------------------------------------------------------


async def test_commit_keeps_the_row_and_the_job(orders_db: str) -> None:
    worker = ConfirmOrderWorker()
    db = AppPool(orders_db, config(worker))
    async with serve(fastapi_app(db)) as http:
        response = await http.post("/orders/a1")
        assert response.status_code == 201
        # Committed before the response was sent: visible to anyone at once.
        assert counts(orders_db) == (1, 1)
        # ... and worked by the app's own client, started by the lifespan.
        with anyio.fail_after(10):
            await worker.event.wait()
        assert worker.done == {response.json()["order_id"]}
    # Shutdown: the client stopped first, then the pool closed.
    assert not db.client.running
    assert db.pool.closed


@pytest.mark.parametrize(("path", "status"), [("refused", 409), ("crash", 500)])
async def test_an_error_after_the_insert_rolls_back_both(
    orders_db: str, path: str, status: int
) -> None:
    db = AppPool(orders_db, config(ConfirmOrderWorker()))
    async with serve(fastapi_app(db)) as http:
        response = await http.post(f"/orders/b1/{path}")
        assert response.status_code == status
        assert counts(orders_db) == (0, 0)
        # The connection went back to the pool clean: the next request commits normally.
        assert (await http.post("/orders/b2")).status_code == 201
        assert counts(orders_db) == (1, 1)


async def test_a_failed_commit_is_not_reported_as_success(orders_db: str) -> None:
    # scope="function" runs the commit before the response is sent: a commit that fails
    # (here a deferred constraint) makes the request fail instead of answering 201.
    db = AppPool(orders_db, config(ConfirmOrderWorker()))
    async with serve(fastapi_app(db)) as http:
        assert (await http.post("/orders/dup")).status_code == 201
        assert (await http.post("/orders/dup")).status_code == 500
        assert counts(orders_db) == (1, 1)


async def test_requests_and_client_share_one_bounded_pool(orders_db: str) -> None:
    worker = ConfirmOrderWorker(expect=30)
    max_size = 3
    db = AppPool(orders_db, config(worker), max_size=max_size)
    peak = 0

    async def sample(observer: psycopg.AsyncConnection[Any]) -> None:
        nonlocal peak
        while True:
            cur = await observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                # Not an autovacuum worker visiting the database.
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            row = await cur.fetchone()
            assert row is not None
            peak = max(peak, int(row[0]))
            await anyio.sleep(0.005)

    async with (
        serve(fastapi_app(db)) as http,
        await psycopg.AsyncConnection.connect(orders_db, autocommit=True) as observer,
    ):
        before = db.pool.get_stats().get("requests_num", 0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, observer)
            responses: list[httpx.Response] = []

            async def post(n: int) -> None:
                responses.append(await http.post(f"/orders/c{n}"))

            async with anyio.create_task_group() as requests:
                for n in range(30):
                    requests.start_soon(post, n)
            with anyio.fail_after(20):
                await worker.event.wait()
            tg.cancel_scope.cancel()
        assert [r.status_code for r in responses] == [201] * 30
        assert counts(orders_db) == (30, 30)
        # The client took its connections from the app's pool (30 requests alone are 30)...
        assert db.pool.get_stats()["requests_num"] - before > 30
    # ... and requests and client together never held more than the pool's max_size, plus
    # the client's LISTEN connection.
    assert 0 < peak <= max_size + 1


async def test_an_unreachable_database_fails_the_start_up() -> None:
    db = AppPool("postgresql://127.0.0.1:1/nowhere", river.Config(connect_timeout=2))
    with pytest.raises(river.DatabaseUnavailableError):
        async with db.lifespan(None):
            pass
    assert db.pool.closed


async def test_a_second_lifespan_is_refused_and_leaves_the_first_running(db_url: str) -> None:
    # Two apps sharing one AppPool, or a lifespan nested in another: the inner one's exit
    # used to stop the client and close the pool under the first.
    db = AppPool(db_url)
    async with db.lifespan(None):
        with pytest.raises(river.RiverError, match="already running"):
            async with db.lifespan(None):
                pass
        assert not db.pool.closed
        async with db.begin() as conn:
            assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
        await db.client.insert(ConfirmOrder(order_id=1))
    assert db.pool.closed


# --------------------------------------------------------------------------------------------
# Starlette
# --------------------------------------------------------------------------------------------


def starlette_app(db: AppPool) -> Starlette:
    async def create(request: Request) -> Response:
        async with db.begin() as conn:
            order_id = await place(conn, db.client, request.path_params["ref"])
            if request.query_params.get("refuse"):
                return JSONResponse({"detail": "refused"}, status_code=409)  # committed!
            if request.query_params.get("crash"):
                raise RuntimeError("a bug after the insert")
        return JSONResponse({"order_id": order_id}, status_code=201)

    return Starlette(
        routes=[Route("/orders/{ref}", create, methods=["POST"])], lifespan=db.lifespan
    )


async def test_starlette_commit_and_rollback(orders_db: str) -> None:
    worker = ConfirmOrderWorker()
    db = AppPool(orders_db, config(worker))
    async with serve(starlette_app(db)) as http:
        assert (await http.post("/orders/s1", params={"crash": "1"})).status_code == 500
        assert counts(orders_db) == (0, 0)
        response = await http.post("/orders/s2")
        assert response.status_code == 201
        assert counts(orders_db) == (1, 1)
        with anyio.fail_after(10):
            await worker.event.wait()
        assert worker.done == {response.json()["order_id"]}
        # Returning an error response is not raising: the transaction commits.
        assert (await http.post("/orders/s3", params={"refuse": "1"})).status_code == 409
        assert counts(orders_db) == (2, 2)
    assert db.pool.closed


class Stuck(river.JobArgs):
    kind: ClassVar[str] = "fastapi_stuck"


class StuckWorker(river.Worker[Stuck]):
    def __init__(self) -> None:
        self.started = anyio.Event()

    async def work(self, job: river.Job[Stuck]) -> None:
        self.started.set()
        await anyio.sleep_forever()


async def test_shutdown_is_bounded_by_stop_timeout(db_url: str) -> None:
    """A job that never ends does not hold the app's shutdown: after stop_timeout it is
    cancelled, its outcome written (back to available with its attempt restored), and the
    pool closed."""
    worker = StuckWorker()
    workers = river.Workers()
    workers.add(worker)
    config = river.Config(workers=workers, queues={"default": river.QueueConfig()})
    db = AppPool(db_url, config, max_size=4, stop_timeout=0.5)
    with anyio.fail_after(30):  # the shutdown included: without the timeout it never ends
        async with db.lifespan():
            result = await db.client.insert(Stuck())
            await worker.started.wait()
    assert db.pool.closed
    assert not db.client.running
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT state::text, attempt FROM river_job WHERE id = %s", (result.job.id,)
        ).fetchone()
    assert row == ("available", 0)
