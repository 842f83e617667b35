"""River schema version 5 (005_migration_unique_client)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0004_pending_and_more")]
    operations = [RiverSchemaVersion(5)]
