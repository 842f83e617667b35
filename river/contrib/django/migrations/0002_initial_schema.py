"""River schema version 2 (002_initial_schema)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0001_create_river_migration")]
    operations = [RiverSchemaVersion(2)]
