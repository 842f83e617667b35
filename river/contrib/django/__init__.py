"""Django integration of river-queue (``pip install 'river-queue[django]'``; docs/django.md).

- ``INSTALLED_APPS += ["river.contrib.django"]``: ``python manage.py migrate`` brings River's
  schema to the latest version on ``RIVER["DATABASE"]`` (river/contrib/django/migrations), and
  ``python manage.py river_worker`` runs the workers as ``river worker`` does;
- ``river.Client``'s ``*_tx`` calls accept ``django.db.connection`` (or ``connections[alias]``):
  the job joins Django's transaction;
- :func:`get_client`: a :class:`DjangoClient` whose calls run on Django's connection;
- ``river.contrib.django.tasks.RiverBackend``: a ``django.tasks`` backend.

Settings: ``RIVER = {"DATABASE": "default", "SCHEMA": None, "APP": None, "MIGRATE": True}``
(river/contrib/django/_settings.py). Needs Django's PostgreSQL backend on psycopg 3.
"""

from __future__ import annotations

from river.contrib.django._client import DjangoClient, get_client
from river.contrib.django._conn import psycopg_connection
from river.contrib.django._settings import RiverSettings, river_settings

__all__ = ["DjangoClient", "RiverSettings", "get_client", "psycopg_connection", "river_settings"]
