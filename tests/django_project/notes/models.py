from django.db import models


class Note(models.Model):
    text = models.TextField()
    #: The backend pid of the connection that wrote the note (connection hygiene tests).
    backend_pid = models.IntegerField(null=True)

    class Meta:
        app_label = "notes"
