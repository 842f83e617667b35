"""System checks (``manage.py check``): the ``RIVER`` setting and River's database backend.

- ``river.E001``: ``settings.RIVER`` is invalid (the message names the key and the rule);
- ``river.E002``: ``RIVER["DATABASE"]`` does not use Django's PostgreSQL backend on psycopg 3.

Neither connects to the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from river.contrib.django._settings import check_postgres, river_settings

__all__ = ["check_settings"]


def check_settings() -> list[checks.CheckMessage]:
    """The problems of the ``RIVER`` setting and of its database (see module doc)."""
    try:
        database = river_settings().database
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="river.E001")]
    try:
        check_postgres(database)
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="river.E002")]
    return []


@checks.register()
def _check_river(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> list[Any]:
    return list(check_settings())
