"""Settings of the test project: the database comes from $DATABASE_URL (the test's own)."""

from __future__ import annotations

import os

import django
from psycopg.conninfo import conninfo_to_dict


def _postgres(url: str) -> dict[str, object]:
    params = conninfo_to_dict(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", ""),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        # Tests find the project's own connections in pg_stat_activity by this name.
        "OPTIONS": {"application_name": "river_django_test"},
        "CONN_MAX_AGE": int(os.environ.get("DJANGO_CONN_MAX_AGE", "0")),
    }


SECRET_KEY = "river-queue tests only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": _postgres(os.environ.get("DATABASE_URL", "postgresql:///river_django_unset")),
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
INSTALLED_APPS = [
    # The admin (tests/test_django_admin.py) and what it needs.
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "river.contrib.django",
    "notes",
    # django.tasks is part of Django from 6.0; before, the django-tasks backport provides it.
    *(["django_tasks"] if django.VERSION < (6,) else []),
]
ROOT_URLCONF = "djproject.urls"
ALLOWED_HOSTS = ["testserver", "localhost"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
RIVER = {
    "DATABASE": os.environ.get("RIVER_DATABASE", "default"),
    "SCHEMA": os.environ.get("RIVER_SCHEMA") or None,
    "APP": "notes.jobs:workers",
    "MIGRATE": os.environ.get("RIVER_MIGRATE", "1") == "1",
}
TASKS = {
    "default": {
        "BACKEND": "river.contrib.django.tasks.RiverBackend",
        "QUEUES": ["default", "tasks"],
        "OPTIONS": {"MAX_ATTEMPTS": 1},
    }
}
