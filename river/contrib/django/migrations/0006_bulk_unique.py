"""River schema version 6 (006_bulk_unique)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0005_migration_unique_client")]
    operations = [RiverSchemaVersion(6)]
