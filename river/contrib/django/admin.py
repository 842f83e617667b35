"""River's jobs and queues in Django's admin (docs/django.md, "Admin").

Registered on ``django.contrib.admin.site`` when ``django.contrib.admin`` discovers this module,
unless ``RIVER["ADMIN"]`` is False (read when this module is imported). Read-only pages over
the unmanaged models of river/contrib/django/models.py; every change (retry, cancel, delete,
pause, resume) goes through river's admin API on Django's connection, so River's rules apply.

List pages stay cheap on big tables: no full result count (``show_full_result_count``), a
paginator that counts at most :data:`COUNT_LIMIT` rows, no facet counts, filters whose choices
come from fixed values (state), ``river_queue`` (queue) or a skip scan of the ``kind`` index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

if TYPE_CHECKING:
    _PaginatorBase = Paginator[Any]
    _ModelAdminBase = admin.ModelAdmin[Any]
else:  # not subscriptable at run time (only django-stubs makes them generic)
    _PaginatorBase = Paginator
    _ModelAdminBase = admin.ModelAdmin

from river._config import Config
from river._driver import queries_for
from river._errors import JobNotFoundError, JobRunningError, UniqueConflictError
from river._sansio import Query, run_sync, single
from river._types import JobRow, JobState
from river.contrib.django._client import DjangoClient
from river.contrib.django._conn import psycopg_connection
from river.contrib.django._settings import river_settings
from river.contrib.django.models import JOB_STATES, Job, Queue

__all__ = ["COUNT_LIMIT", "JobAdmin", "QueueAdmin", "admin_enabled"]

#: The list pages count at most this many rows (pages beyond are not offered: filter instead).
COUNT_LIMIT = 10_000
#: At most this many jobs per action (the rest of a "select all" selection is left alone).
ACTION_LIMIT = 1_000
#: At most this many choices in the kind and queue filters.
FILTER_CHOICES = 200


def admin_enabled() -> bool:
    """``RIVER["ADMIN"]`` (True when absent). Read leniently: this module is imported as
    Django starts (admin autodiscovery), so a wrong value counts as the default here and
    ``manage.py check`` reports it (``river.E001``)."""
    raw: Any = getattr(settings, "RIVER", None) or {}
    enabled = raw.get("ADMIN", True) if isinstance(raw, dict) else True
    return enabled if isinstance(enabled, bool) else True


def _client() -> DjangoClient:
    # Not get_client(): the admin calls need no workers, so RIVER["APP"] is not loaded.
    return DjangoClient(Config(schema=river_settings().schema))


class _CappedPaginator(_PaginatorBase):
    """Counts at most COUNT_LIMIT rows (``SELECT count(*) FROM (... LIMIT n)``)."""

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        return int(object_list[:COUNT_LIMIT].count())


def _pre(value: Any) -> SafeString:
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


# --- filters ------------------------------------------------------------------------------


class _StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(s, s) for s in JOB_STATES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(state=value) if value in JOB_STATES else queryset


class _QueueFilter(admin.SimpleListFilter):
    """The queues of ``river_queue`` (a small table), plus the one selected."""

    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = list(Queue.objects.order_by("name").values_list("name", flat=True)[:FILTER_CHOICES])
        value = self.value()
        if value and value not in names:
            names.append(value)
        return [(n, n) for n in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        # Every state named, so that the (state, queue, ...) fetch index serves the filter
        # instead of a scan of the table.
        return queryset.filter(state__in=JOB_STATES, queue=value) if value else queryset


class _KindFilter(admin.SimpleListFilter):
    """The distinct kinds, by a skip scan of the ``river_job_kind`` index (one index probe per
    kind, not a scan of the table)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        settings_ = river_settings()
        query = Query(
            queries_for(settings_.schema).job_kinds_distinct,
            {"limit": FILTER_CHOICES},
            fetch="all",
        )
        conn = psycopg_connection(connections[settings_.database])
        kinds = [str(row[0]) for row in run_sync(conn, single(query))]
        value = self.value()
        if value and value not in kinds:
            kinds.append(value)
        return [(k, k) for k in kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(kind=value) if value else queryset


# --- actions --------------------------------------------------------------------------------


def _log_entries(request: HttpRequest, objects: Sequence[Any], flag: str, message: str) -> None:
    """Admin log entries (the objects' history, "Recent actions") for what an action did;
    ``flag``: ``"change"`` or ``"deletion"``. Imported here: django.contrib.admin's models
    exist only once the apps are loaded."""
    from django.contrib.admin.models import CHANGE, DELETION, LogEntry

    if objects:
        user: Any = request.user
        action_flag = DELETION if flag == "deletion" else CHANGE
        LogEntry.objects.log_actions(user.pk, objects, action_flag, message)


def _each_job(
    model_admin: admin.ModelAdmin[Any],
    request: HttpRequest,
    queryset: QuerySet[Any],
    call: Callable[[DjangoClient, int], str],
    flag: str,
) -> None:
    """Run ``call`` for each selected job (at most ACTION_LIMIT); one message per outcome,
    naming the ids (``call`` returns the outcome's text; "!" first marks a refusal), and one
    admin log entry (``flag``: change or deletion) per job acted on."""
    rows = list(queryset.order_by("id").values_list("id", "kind")[: ACTION_LIMIT + 1])
    client = _client()
    outcomes: dict[str, list[Job]] = {}
    for job_id, kind in rows[:ACTION_LIMIT]:
        outcomes.setdefault(call(client, job_id), []).append(Job(id=job_id, kind=kind))
    for outcome, jobs in outcomes.items():
        level = messages.WARNING if outcome.startswith("!") else messages.SUCCESS
        text = outcome.lstrip("!")
        shown = ", ".join(str(j.id) for j in jobs[:20]) + (" ..." if len(jobs) > 20 else "")
        model_admin.message_user(request, f"{text}: {len(jobs)} job(s) ({shown})", level)
        if level == messages.SUCCESS:
            _log_entries(request, jobs, flag, f"{text.capitalize()} (river admin action).")
    if len(rows) > ACTION_LIMIT:
        model_admin.message_user(
            request,
            f"only the first {ACTION_LIMIT} selected jobs were handled: run the action again",
            messages.WARNING,
        )


def _retry(client: DjangoClient, job_id: int) -> str:
    try:
        before = client.job_get(job_id)
        after = client.job_retry(job_id)
    except JobNotFoundError:
        return "!not found (deleted meanwhile)"
    except UniqueConflictError:
        return "!not retried: another job holds its unique key (retry once it is finalized)"
    if after.state is JobState.RUNNING:
        return "!not retried: running"
    if after.state is JobState.AVAILABLE and before.state is JobState.AVAILABLE:
        return "!not retried: already available"
    return "retried (available now)"


def _cancel(client: DjangoClient, job_id: int) -> str:
    try:
        before = client.job_get(job_id)
        after: JobRow = client.job_cancel(job_id)
    except JobNotFoundError:
        return "!not found (deleted meanwhile)"
    if after.state is JobState.CANCELLED and before.state is not JobState.CANCELLED:
        return "cancelled"
    if after.state is JobState.RUNNING:
        return "cancel requested: the client working the job stops it"
    return f"!not cancelled: already {after.state.value}"


def _delete(client: DjangoClient, job_id: int) -> str:
    try:
        client.job_delete(job_id)
    except JobNotFoundError:
        return "!not found (deleted meanwhile)"
    except JobRunningError:
        return "!not deleted: running (cancel it first)"
    return "deleted"


# --- model admins ---------------------------------------------------------------------------


class _SortableByChangeList(ChangeList):
    """Sorts by the ``sortable_by`` columns only. Django's own list offers only those in its
    headers but sorts by any column the query string names (``?o=6``): on a big table that is
    a sort of the whole table."""

    def _sortable(self, field_name: Any) -> bool:
        return self.sortable_by is None or field_name in self.sortable_by

    def get_ordering_field(self, field_name: Any) -> Any:
        if not self._sortable(field_name):
            return None  # skipped, as a column without an admin_order_field is
        return super().get_ordering_field(field_name)

    def get_ordering_field_columns(self) -> dict[int, Literal["desc", "asc"]]:
        columns = super().get_ordering_field_columns()
        return {
            index: order
            for index, order in columns.items()
            if index < len(self.list_display) and self._sortable(self.list_display[index])
        }


class _ReadOnlyAdmin(_ModelAdminBase):
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = _CappedPaginator
    list_per_page = 50
    actions_selection_counter = True

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _SortableByChangeList

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # no Django delete: the delete action goes through river's API

    def has_river_permission(self, request: HttpRequest) -> bool:
        """Whether the user may run the actions: ``river.change_<model>`` (superusers)."""
        opts = self.opts
        user: Any = request.user
        return bool(user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))


class JobAdmin(_ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "queue",
        "state",
        "attempts",
        "priority",
        "scheduled_at",
        "finalized_at",
    )
    list_filter = (_StateFilter, _KindFilter, _QueueFilter)
    search_help_text = "a job id, or a kind (exact)"
    search_fields = ("kind",)  # get_search_results below decides
    ordering = ("-id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and str(match.url_name).endswith("_changelist"):
            # The list shows none of the big columns (tracebacks can be large).
            queryset = queryset.defer("args", "metadata", "errors")
        return queryset

    sortable_by = ("id",)  # the primary key's index; other columns would sort the whole table
    actions = ("retry_jobs", "cancel_jobs", "delete_jobs")
    fieldsets = (
        (None, {"fields": ("id", "kind", "queue", "state", "priority", "attempts")}),
        ("Arguments", {"fields": ("args_display", "metadata_display", "tags_display")}),
        (
            "Times",
            {"fields": ("created_at", "scheduled_at", "attempted_at", "finalized_at")},
        ),
        ("Attempts", {"fields": ("attempted_by_display", "errors_display")}),
    )
    readonly_fields = (
        "id",
        "kind",
        "queue",
        "state",
        "priority",
        "attempts",
        "args_display",
        "metadata_display",
        "tags_display",
        "created_at",
        "scheduled_at",
        "attempted_at",
        "finalized_at",
        "attempted_by_display",
        "errors_display",
    )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().lstrip("#")
        if not term:
            return queryset, False
        if term.isascii() and term.isdecimal() and int(term) < 2**63:
            return queryset.filter(id=int(term)), False
        return queryset.filter(kind=term), False  # the kind index, not a LIKE scan

    @admin.display(description="attempt")
    def attempts(self, obj: Job) -> str:
        return f"{obj.attempt}/{obj.max_attempts}"

    @admin.display(description="args")
    def args_display(self, obj: Job) -> SafeString:
        return _pre(obj.args)

    @admin.display(description="metadata")
    def metadata_display(self, obj: Job) -> SafeString:
        return _pre(obj.metadata)

    @admin.display(description="tags")
    def tags_display(self, obj: Job) -> str:
        return ", ".join(obj.tags or ()) or "-"

    @admin.display(description="attempted by")
    def attempted_by_display(self, obj: Job) -> str:
        return ", ".join(obj.attempted_by or ()) or "-"

    @admin.display(description="errors")
    def errors_display(self, obj: Job) -> SafeString | str:
        errors: Sequence[Any] = obj.errors or ()
        if not errors:
            return "-"
        return format_html_join(
            "",
            "<div><p><strong>attempt {}</strong> at {}</p>"
            '<pre style="white-space: pre-wrap">{}</pre>'
            '<pre style="white-space: pre-wrap">{}</pre></div>',
            _error_rows(errors),
        )

    @admin.action(description="Retry the selected jobs", permissions=["river"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        _each_job(self, request, queryset, _retry, "change")

    @admin.action(description="Cancel the selected jobs", permissions=["river"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        _each_job(self, request, queryset, _cancel, "change")

    @admin.action(description="Delete the selected jobs (not running ones)", permissions=["river"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        _each_job(self, request, queryset, _delete, "deletion")


def _error_rows(errors: Iterable[Any]) -> Iterable[tuple[Any, ...]]:
    for error in errors:
        entry = error if isinstance(error, dict) else {"error": error}
        yield (
            entry.get("attempt", "?"),
            entry.get("at", "?"),
            entry.get("error", ""),
            entry.get("trace", "") or "(no trace)",
        )


class QueueAdmin(_ReadOnlyAdmin):
    list_display = ("name", "paused", "paused_at", "updated_at", "created_at")
    search_fields = ("=name",)
    ordering = ("name",)
    actions = ("pause_queues", "resume_queues")
    fields = ("name", "paused_at", "created_at", "updated_at", "metadata_display")
    readonly_fields = fields

    @admin.display(description="paused", boolean=True)
    def paused(self, obj: Queue) -> bool:
        return obj.paused_at is not None

    @admin.display(description="metadata")
    def metadata_display(self, obj: Queue) -> SafeString:
        return _pre(obj.metadata)

    def _each_queue(self, request: HttpRequest, queryset: QuerySet[Any], *, pause: bool) -> None:
        client = _client()
        names = list(queryset.values_list("name", flat=True)[:ACTION_LIMIT])
        for name in names:
            (client.queue_pause if pause else client.queue_resume)(name)
        verb = "paused" if pause else "resumed"
        self.message_user(request, f"{verb}: {', '.join(names)}", messages.SUCCESS)
        _log_entries(
            request,
            [Queue(name=name) for name in names],
            "change",
            f"{verb.capitalize()} (river admin action).",
        )

    @admin.action(description="Pause the selected queues", permissions=["river"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each_queue(request, queryset, pause=True)

    @admin.action(description="Resume the selected queues", permissions=["river"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._each_queue(request, queryset, pause=False)


if admin_enabled():
    admin.site.register(Job, JobAdmin)
    admin.site.register(Queue, QueueAdmin)
