"""River in a Django project, in one file: migrate, enqueue in Django's transaction (a river job
and a django.tasks task), then work them.

Run it with DATABASE_URL pointing at a PostgreSQL database (Django 5.2 also needs the
django-tasks backport for the tasks part: pip install django-tasks):

    DATABASE_URL=postgresql://localhost/app python examples/django_app.py

A real project puts the settings in settings.py, the jobs and tasks in its apps, and runs the
workers with `python manage.py river_worker` (docs/django.md); here an AsyncClient works them
for a moment in this process instead.
"""

from __future__ import annotations

import os
from typing import ClassVar

import anyio
import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict

import river

URL = os.environ.get("DATABASE_URL", "postgresql:///app")
_db = conninfo_to_dict(URL)
settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _db.get("dbname", ""),
            "USER": _db.get("user", ""),
            "PASSWORD": _db.get("password", ""),
            "HOST": _db.get("host", ""),
            "PORT": _db.get("port", ""),
        }
    },
    INSTALLED_APPS=[
        "river.contrib.django",  # manage.py migrate creates River's tables; river_worker
        *(["django_tasks"] if django.VERSION < (6,) else []),  # the django.tasks backport
    ],
    RIVER={"APP": "__main__:workers"},  # the river workers of this project
    TASKS={"default": {"BACKEND": "river.contrib.django.tasks.RiverBackend"}},
    USE_TZ=True,
)
django.setup()

from django.core.management import call_command  # noqa: E402  (after setup)
from django.db import connection, transaction  # noqa: E402

try:
    from django.tasks import task
except ImportError:  # Django 5.2
    from django_tasks import task  # type: ignore[no-redef]

from river.contrib.django import get_client  # noqa: E402
from river.contrib.django.worker import app  # noqa: E402


class SendWelcome(river.JobArgs):
    kind: ClassVar[str] = "send_welcome"
    user_id: int


class SendWelcomeWorker(river.Worker[SendWelcome]):
    def work(self, job: river.Job[SendWelcome]) -> None:  # sync: a thread, with Django's ORM
        with connection.cursor() as cur:
            cur.execute("SELECT name FROM example_users WHERE id = %s", [job.args.user_id])
            (name,) = cur.fetchone()
        print(f"worker: welcome, {name}!")


workers = river.Workers()
workers.add(SendWelcomeWorker())


@task
def receipt(order: int) -> str:
    return f"receipt for order {order}"


def sign_up(name: str, *, fail: bool = False) -> int:
    """A view would do this: the user row and both jobs commit or roll back together."""
    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("INSERT INTO example_users (name) VALUES (%s) RETURNING id", [name])
            (user_id,) = cur.fetchone()
        get_client().insert(SendWelcome(user_id=user_id))  # on Django's connection
        receipt.enqueue(user_id)  # the django.tasks way, same transaction
        if fail:
            raise RuntimeError("payment declined")
    return int(user_id)


async def work_for_a_moment(job_ids: list[int]) -> None:
    async with river.AsyncClient(URL, app()) as client:  # app(): what river_worker runs
        with anyio.fail_after(30):
            while True:
                rows = [await client.job_get(job_id) for job_id in job_ids]
                if all(row.state == river.JobState.COMPLETED for row in rows):
                    return
                await anyio.sleep(0.1)


def main() -> None:
    call_command("migrate", verbosity=0)  # River's schema (a no-op if `river migrate-up` ran)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS example_users (id serial PRIMARY KEY, name text)")

    try:
        sign_up("mallory", fail=True)
    except RuntimeError as exc:
        print(f"rolled back ({exc}): no user, no jobs")
    sign_up("alice")
    jobs = get_client().job_list(river.JobListParams(kinds=["send_welcome", "django_task"]))
    print(f"committed: {len(jobs.jobs)} jobs waiting")

    anyio.run(work_for_a_moment, [job.id for job in jobs.jobs])
    task_job = next(job for job in jobs.jobs if job.kind == "django_task")
    result = receipt.get_result(str(task_job.id))
    print(f"django.tasks result: {result.status} {result.return_value!r}")


if __name__ == "__main__":
    main()
