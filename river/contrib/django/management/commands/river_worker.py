"""``python manage.py river_worker [APP] [flags]``: ``river worker`` in a Django project.

The same flags and behaviour as ``river worker`` (docs/worker.md): SIGTERM/SIGINT soft stop
bounded by ``--shutdown-timeout``, SIGHUP/``--watch-config`` reload of the ``--config`` TOML
file, ``--health-addr``, ``--processes N``, ``--reload``, logging flags. It is ``river
worker``'s own code (river/worker/_cli.py) with these differences (``WorkerHost``):

- APP is optional: the workers come from ``RIVER["APP"]`` (or APP when given), plus the
  ``django.tasks`` backend's; each job runs with Django's connection hygiene
  (river/contrib/django/_app.py);
- the database is Django's ``RIVER["DATABASE"]`` unless ``--database-url`` or the config file
  names one (``$DATABASE_URL`` is not read); the schema defaults to ``RIVER["SCHEMA"]``;
- the children of ``--processes``/``--reload`` are ``python -m django river_worker`` processes
  (Django set up first in each, with the same ``DJANGO_SETTINGS_MODULE``);
- ``-v 2`` is ``river worker -v``, ``-v 3`` is ``--debug``; errors are ``CommandError``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser

from river._errors import RiverError
from river.contrib.django._conn import conninfo
from river.contrib.django._settings import project_root, river_settings
from river.contrib.django.worker import APP, ENV_APP
from river.worker._cli import _DESCRIPTION, WorkerHost, _add_flags, _cmd_worker


class Command(BaseCommand):
    help = (
        "Run River's workers (RIVER['APP'], or APP when given, and the django.tasks backend) "
        "until SIGTERM or SIGINT, as `river worker` does, on RIVER['DATABASE'] (docs/django.md). "
        + _DESCRIPTION.split("\n\n", 1)[1].replace("\n", " ")
    )

    def add_arguments(self, parser: CommandParser) -> None:
        _add_flags(parser, app_optional=True)
        # river's global flags, which `river worker` passes to its children too.
        parser.add_argument("--debug", action="store_true", help="as river's --debug (-v 3)")
        parser.add_argument("--verbose", action="store_true", help="as river's -v (-v 2)")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = river_settings()
        namespace = argparse.Namespace(**options)
        given = options.get("app")
        verbosity = int(options.get("verbosity") or 1)
        namespace.debug = bool(options.get("debug")) or verbosity >= 3
        namespace.verbose = not namespace.debug and (bool(options.get("verbose")) or verbosity == 2)
        namespace.app = APP
        root = project_root()
        namespace.app_dir = options.get("app_dir") or root
        host = WorkerHost(
            child_command=(sys.executable, "-m", "django", "river_worker", "--pythonpath", root),
            default_url=lambda: conninfo(settings.database),
        )
        previous = os.environ.get(ENV_APP)
        if given and given != APP:
            os.environ[ENV_APP] = given  # read by this process's APP and its children's
        try:
            status = _cmd_worker(namespace, host)
        except (RiverError, psycopg.Error, OSError) as exc:
            raise CommandError(" ".join(str(exc).split()) or type(exc).__name__) from exc
        finally:
            if previous is None:
                os.environ.pop(ENV_APP, None)
            else:
                os.environ[ENV_APP] = previous
        if status:
            sys.exit(status)
