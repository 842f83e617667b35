"""The dashboard mounted in a FastAPI app, next to the app's own routes and its River client.

The app works `send_invoice` jobs; the dashboard lives under /river (pages, and its JSON API
under /river/api). It is created with the app's client, so its periodic page shows the
client's schedules and next runs. The hook lets in only requests with the right bearer
token (or the cookie a browser gets by signing in with it on the form the dashboard shows).

Run: `RIVER_UI_TOKEN=... uvicorn examples.ui_fastapi:app` (needs `pip install
'river-queue[ui]' fastapi`), then open http://127.0.0.1:8000/river/ and sign in with the
token, or `python examples/ui_fastapi.py` for a self-test with an in-process HTTP client.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import psycopg
from fastapi import FastAPI

import river
import river.ui
from river import dev
from river.migrate import Migrator


class SendInvoice(river.JobArgs):
    kind: ClassVar[str] = "send_invoice"
    invoice_id: int


class SendInvoiceWorker(river.Worker[SendInvoice]):
    async def work(self, job: river.Job[SendInvoice]) -> None:
        if job.args.invoice_id % 5 == 0:
            raise RuntimeError(f"mail server refused invoice {job.args.invoice_id}")


class Reconcile(river.JobArgs):
    kind: ClassVar[str] = "reconcile"


class ReconcileWorker(river.Worker[Reconcile]):
    async def work(self, job: river.Job[Reconcile]) -> None:
        pass


def create_app(database_url: str, token: str) -> FastAPI:
    workers = river.Workers()
    workers.add(SendInvoiceWorker())
    workers.add(ReconcileWorker())
    client = river.AsyncClient(
        database_url,
        river.Config(
            queues={"invoices": river.QueueConfig(max_workers=10)},
            workers=workers,
            periodic_jobs=[
                river.PeriodicJob(river.Cron("0 * * * *"), Reconcile, id="hourly_reconcile")
            ],
        ),
    )
    dashboard = river.ui.create_app(database_url, client=client, auth=river.ui.bearer_token(token))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:  # start() now, stop() + close() at shutdown
            try:
                yield
            finally:
                # Starlette gives a mounted app no lifespan of its own: close its pool here.
                await dashboard.close()

    app = FastAPI(lifespan=lifespan)
    app.mount("/river", dashboard)

    @app.post("/invoices/{invoice_id}/send")
    async def send(invoice_id: int) -> dict[str, int]:
        result = await client.insert(
            SendInvoice(invoice_id=invoice_id), river.InsertOpts(queue="invoices", max_attempts=1)
        )
        return {"job_id": result.job.id}

    return app


def _database_url() -> str:
    url = dev.database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        Migrator(conn).migrate_up()
    return url


async def self_test() -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    token = "example-token-0123456789"
    app = create_app(_database_url(), token)
    auth = {"Authorization": f"Bearer {token}"}
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            for invoice in (1, 5):
                await http.post(f"/invoices/{invoice}/send")
            # Invoice 5 fails once and is discarded (max_attempts=1).
            for _ in range(500):
                page = await http.get("/river/api/jobs?kind=send_invoice", headers=auth)
                states = sorted(j["state"] for j in page.json()["jobs"])
                if states == ["completed", "discarded"]:
                    break
                await asyncio.sleep(0.01)
            print("GET /river/api/jobs?kind=send_invoice ->", states)
            print("GET /river/ without a token ->", (await http.get("/river/")).status_code)
            print(
                "GET /river/ with the token ->",
                (await http.get("/river/", headers=auth)).status_code,
            )

            meta = (await http.get("/river/api/meta", headers=auth)).json()
            discarded = next(j for j in page.json()["jobs"] if j["state"] == "discarded")
            detail = (await http.get(f"/river/api/jobs/{discarded['id']}", headers=auth)).json()
            print("last error:", detail["job"]["errors"][-1]["error"])
            # Mutations are POSTs carrying the dashboard's CSRF token.
            retried = await http.post(
                f"/river/api/jobs/{discarded['id']}/retry",
                headers={**auth, "X-River-CSRF": meta["csrf_token"]},
            )
            print("POST retry ->", retried.status_code, retried.json()["job"]["state"])
            periodic = (await http.get("/river/api/periodic", headers=auth)).json()
            print("periodic:", [(j["id"], j["schedule"]) for j in periodic["jobs"]])
            assert states == ["completed", "discarded"]
            assert retried.status_code == 200


if __name__ == "__main__":
    asyncio.run(self_test())
elif __name__ == "examples.ui_fastapi":
    app = create_app(_database_url(), os.environ["RIVER_UI_TOKEN"])
