"""River schema version 3 (003_river_job_tags_non_null)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0002_initial_schema")]
    operations = [RiverSchemaVersion(3)]
