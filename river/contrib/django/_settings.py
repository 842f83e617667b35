"""The ``RIVER`` setting: read once, validated, cleared when a test overrides settings.

::

    RIVER = {
        "DATABASE": "default",  # the alias of DATABASES holding River's tables
        "SCHEMA": None,  # River's schema (None: the connection's search_path)
        "APP": None,  # "module:attribute", what `river worker APP` takes
        "MIGRATE": True,  # manage.py migrate brings River's schema up to date
    }

Every key is optional; a missing ``RIVER`` means the defaults. Mistakes raise
``ImproperlyConfigured`` naming the key and the rule (``manage.py check`` reports them as
``river.E001``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from river._errors import ValidationError
from river._names import validate_schema

__all__ = ["RiverSettings", "check_postgres", "clear_caches", "project_root", "river_settings"]

_KEYS = ("DATABASE", "SCHEMA", "APP", "MIGRATE", "ADMIN")  # ADMIN: read by admin.py


@dataclass(frozen=True, slots=True)
class RiverSettings:
    """The validated ``RIVER`` setting (see module doc)."""

    #: Alias in ``DATABASES`` of the database with River's tables.
    database: str = "default"
    #: River's schema, None for the connection's search_path.
    schema: str | None = None
    #: ``module:attribute`` naming a ``river.Workers``, a ``river.Config`` or a factory.
    app: str | None = None
    #: Whether ``manage.py migrate`` manages River's schema on ``database``.
    migrate: bool = True


def _error(key: str, rule: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"settings.RIVER[{key!r}] {rule}")


@cache
def river_settings() -> RiverSettings:
    """The ``RIVER`` setting, validated (ImproperlyConfigured naming the key otherwise)."""
    raw: Any = getattr(settings, "RIVER", None)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(
            f"settings.RIVER must be a dict (keys {', '.join(_KEYS)}), not {type(raw).__name__}"
        )
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.RIVER has unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(_KEYS)}"
        )
    database = raw.get("DATABASE", "default")
    if not isinstance(database, str) or database not in settings.DATABASES:
        known = ", ".join(map(repr, settings.DATABASES)) or "none"
        raise _error(
            "DATABASE", f"must be an alias of settings.DATABASES ({known}), not {database!r}"
        )
    try:
        schema = validate_schema(raw.get("SCHEMA"))
    except ValidationError as exc:
        raise _error("SCHEMA", exc.rule) from None
    app = raw.get("APP")
    if app is not None and (not isinstance(app, str) or ":" not in app):
        raise _error("APP", f"must be 'module:attribute' (as river worker APP), not {app!r}")
    migrate = raw.get("MIGRATE", True)
    if not isinstance(migrate, bool):
        raise _error("MIGRATE", f"must be True or False, not {migrate!r}")
    admin = raw.get("ADMIN", True)
    if not isinstance(admin, bool):
        raise _error("ADMIN", f"must be True or False, not {admin!r}")
    return RiverSettings(database=database, schema=schema, app=app, migrate=migrate)


def check_postgres(alias: str) -> None:
    """Raise ImproperlyConfigured unless database ``alias`` uses Django's PostgreSQL backend
    with psycopg 3 (what River's statements and the ``*_tx`` calls run on)."""
    from django.db import connections

    wrapper = connections[alias]
    engine = wrapper.settings_dict.get("ENGINE", "?")
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"river needs Django's PostgreSQL backend with psycopg 3, but database {alias!r} "
            f"uses {engine}"
        )
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        raise ImproperlyConfigured(
            f"river needs psycopg 3 under Django's PostgreSQL backend, but database {alias!r} "
            "runs on psycopg2: install psycopg 3 (pip install 'psycopg[binary]'), which Django "
            "prefers when both are installed"
        )


def project_root() -> str:
    """The directory on ``sys.path`` that the settings module is imported from (what a child
    process of ``manage.py river_worker`` needs on its path), else the current directory."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE") or getattr(settings, "SETTINGS_MODULE", None)
    if module:
        top = module.partition(".")[0]
        spec = importlib.util.find_spec(top)
        if spec is not None and spec.origin:
            origin = Path(spec.origin).resolve().parent
            # A package: its directory's parent; a lone module: its directory.
            return str(origin.parent if spec.submodule_search_locations else origin)
    return os.getcwd()


def clear_caches(**_: Any) -> None:
    """Forget what was read from settings (connected to ``setting_changed``)."""
    river_settings.cache_clear()
    from river.contrib.django import _client

    _client.clear_clients()
