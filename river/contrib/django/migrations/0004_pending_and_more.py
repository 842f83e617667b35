"""River schema version 4 (004_pending_and_more)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0003_river_job_tags_non_null")]
    operations = [RiverSchemaVersion(4)]
