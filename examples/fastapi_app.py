"""A FastAPI app that runs the River client inside its lifespan.

The client starts with the app and stops gracefully with it (running jobs finish, outcomes
are written). Endpoints insert jobs in the same process that works them.

Run: `uvicorn examples.fastapi_app:app` (needs `pip install fastapi uvicorn`), or
`python examples/fastapi_app.py` for a self-test with an in-process HTTP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse

import river
from river import dev
from river.migrate import Migrator


class ResizeImage(river.JobArgs):
    kind: ClassVar[str] = "resize_image"
    image_id: int
    width: int


resized: set[int] = set()


class ResizeImageWorker(river.Worker[ResizeImage]):
    async def work(self, job: river.Job[ResizeImage]) -> None:
        await asyncio.sleep(0.01)
        resized.add(job.args.image_id)


def create_app(database_url: str) -> FastAPI:
    workers = river.Workers()
    workers.add(ResizeImageWorker())
    client = river.AsyncClient(
        database_url,
        river.Config(queues={"images": river.QueueConfig(max_workers=20)}, workers=workers),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with client:  # start() now, stop() + close() at shutdown
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/images/{image_id}/resize")
    async def resize(image_id: int, width: int = 640) -> dict[str, int]:
        result = await client.insert(
            ResizeImage(image_id=image_id, width=width), river.InsertOpts(queue="images")
        )
        return {"job_id": result.job.id}

    @app.get("/images/{image_id}")
    async def status(image_id: int) -> dict[str, bool]:
        return {"resized": image_id in resized}

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


async def self_test() -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    app = create_app(_database_url())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            response = await http.post("/images/7/resize", params={"width": 320})
            print("POST /images/7/resize ->", response.json())
            for _ in range(500):
                if (await http.get("/images/7")).json()["resized"]:
                    break
                await asyncio.sleep(0.01)
            print("GET /images/7 ->", (await http.get("/images/7")).json())
            assert 7 in resized
            health = await http.get("/healthz")
            print("GET /healthz ->", health.status_code, health.json()["failed"])
            assert health.status_code == 200


if __name__ == "__main__":
    asyncio.run(self_test())
else:
    app = create_app(_database_url()) if __name__ == "examples.fastapi_app" else None
