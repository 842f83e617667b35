"""A project's own subclass of river's django.tasks backend."""

from __future__ import annotations

from river.contrib.django.tasks import RiverBackend


class ProjectBackend(RiverBackend):
    pass
