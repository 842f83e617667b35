"""River schema version 1 (001_create_river_migration)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = []
    operations = [RiverSchemaVersion(1)]
