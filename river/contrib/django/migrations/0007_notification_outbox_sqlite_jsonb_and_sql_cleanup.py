"""River schema version 7 (007_notification_outbox_sqlite_jsonb_and_sql_cleanup)."""

from django.db import migrations

from river.contrib.django._migration import RiverSchemaVersion


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("river", "0006_bulk_unique")]
    operations = [RiverSchemaVersion(7)]
