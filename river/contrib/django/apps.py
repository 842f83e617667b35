"""The Django app of river-queue: ``INSTALLED_APPS = [..., "river.contrib.django"]``."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class RiverConfig(AppConfig):
    """App label ``river``: its migrations bring River's schema to the latest version
    (``python manage.py migrate``), its command ``river_worker`` runs the workers."""

    name = "river.contrib.django"
    label = "river"
    verbose_name = "River"

    def ready(self) -> None:
        from river.contrib.django import checks  # noqa: F401  (registers the checks)

        setting_changed.connect(_setting_changed, dispatch_uid="river.contrib.django")


def _setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting in ("RIVER", "DATABASES", "TASKS"):
        from river.contrib.django._settings import clear_caches

        clear_caches()
