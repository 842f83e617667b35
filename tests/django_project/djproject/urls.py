"""The test project's URLs: Django's admin (tests/test_django_admin.py)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
