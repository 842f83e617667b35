"""``river worker``'s APP for a Django project: ``river.contrib.django.worker:app``.

``manage.py river_worker`` runs ``river worker`` with this APP (river/contrib/django/_app.py
builds the Config). The workers come from ``RIVER["APP"]``, or from the APP given on the
command line (passed to every process of ``--processes`` in :data:`ENV_APP`), plus the
``django.tasks`` backend's worker.
"""

from __future__ import annotations

import os

from river._config import Config

__all__ = ["APP", "ENV_APP", "app"]

#: This module's factory, as ``river worker`` names an APP.
APP = "river.contrib.django.worker:app"
#: Environment variable with the APP given to ``manage.py river_worker`` (overrides
#: ``RIVER["APP"]``); set by the command, read in each of its processes.
ENV_APP = "RIVER_DJANGO_APP"


def app() -> Config:
    """The worker's base Config. Sets Django up first when it is not yet (a plain ``river
    worker river.contrib.django.worker:app`` with ``DJANGO_SETTINGS_MODULE`` set)."""
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()
    from river.contrib.django._app import worker_config

    return worker_config(os.environ.get(ENV_APP) or None)
