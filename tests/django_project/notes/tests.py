"""Django's own test runner on the test project (``manage.py test notes``, run by
tests/test_django.py): the test database gets River's tables, in ``RIVER["SCHEMA"]``."""

from __future__ import annotations

from django.test import TestCase

from notes.args import CreateNote
from river.contrib.django import get_client, river_settings
from river.contrib.django.models import Job


class RiverTablesTest(TestCase):
    def test_jobs_are_inserted_in_rivers_tables(self) -> None:
        job = get_client().insert(CreateNote(text="in a test")).job
        assert list(Job.objects.values_list("id", flat=True)) == [job.id]
        assert Job._meta.db_table == f'"{river_settings().schema}"."river_job"'
