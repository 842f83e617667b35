"""Reconciling a running client with a new configuration (a reload).

The unit of change is a queue. Given the queues the client runs now and the ones the new
configuration wants, :func:`apply_queues` changes the client through ``client.queues`` in an
order that never leaves work without a queue to run it:

1. **add** the new queues (a queue to be paused is paused in the database first when it already
   exists there, so it never fetches);
2. **update** changed ones live (``client.queues.update``: the queue's fetch loop is swapped
   between two fetches, running jobs are not interrupted) and apply a changed ``paused`` flag;
3. **remove** the dropped ones last, draining their running jobs (bounded by the drain timeout,
   after which they are cancelled and return to ``available``).

Queues whose settings did not change are not touched at all, and the client itself (its
leadership, its LISTEN connection, its other producers) is never restarted. Periodic jobs of the
file are matched by id (:func:`apply_periodic`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from river._client import AsyncClient
from river._errors import QueueNotFoundError
from river.worker._config import PeriodicSpec, QueueSpec

__all__ = ["Changes", "apply_periodic", "apply_queues", "diff_queues", "restart_required"]

logger = logging.getLogger("river.worker")


@dataclass(slots=True)
class Changes:
    """What a reload did (or would do) to the queues, each list sorted by name."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self, generation: int) -> str:
        """The one-line reload summary."""

        def names(items: list[str]) -> str:
            return "[" + ",".join(items) + "]"

        return (
            f"reload generation={generation} added={names(self.added)} "
            f"updated={names(self.updated)} removed={names(self.removed)} "
            f"unchanged={names(self.unchanged)}"
        )


def diff_queues(old: Mapping[str, QueueSpec], new: Mapping[str, QueueSpec]) -> Changes:
    """Classify every queue name of ``old`` and ``new``."""
    changes = Changes()
    for name in sorted(set(old) | set(new)):
        if name not in old:
            changes.added.append(name)
        elif name not in new:
            changes.removed.append(name)
        elif _needs_update(old[name], new[name]):
            changes.updated.append(name)
        else:
            changes.unchanged.append(name)
    return changes


def _needs_update(old: QueueSpec, new: QueueSpec) -> bool:
    # A flag going back to "unset" stops managing the pause state: nothing to do.
    return old.config != new.config or (new.paused is not None and new.paused != old.paused)


async def _set_paused_before_add(client: AsyncClient, name: str, paused: bool | None) -> bool:
    """Pause/resume a queue's river_queue row before its producer starts, so that a queue meant
    to be paused never fetches. Returns False when the row does not exist yet."""
    if paused is None:
        return True
    try:
        if paused:
            await client.queue_pause(name)
        else:
            await client.queue_resume(name)
    except QueueNotFoundError:
        return False
    return True


async def prepare_pauses(client: AsyncClient, queues: Mapping[str, QueueSpec]) -> list[str]:
    """Before the client starts: apply each queue's ``paused`` flag to its river_queue row.
    Returns the queues whose rows do not exist yet (to pause right after start)."""
    missing = []
    for name, spec in queues.items():
        if not await _set_paused_before_add(client, name, spec.paused):
            missing.append(name)
    return missing


async def finish_pauses(
    client: AsyncClient, queues: Mapping[str, QueueSpec], names: list[str]
) -> None:
    """After start: pause the queues whose rows :func:`prepare_pauses` could not find."""
    for name in names:
        if queues[name].paused:
            await client.queues.pause(name)


async def apply_queues(
    client: AsyncClient,
    current: dict[str, QueueSpec],
    new: Mapping[str, QueueSpec],
    *,
    drain_timeout: float,
) -> Changes:
    """Change the client's queues from ``current`` to ``new`` (see module doc).

    ``current`` is updated after every step, so when a step fails (a database error) it still
    describes what the client runs, and the exception propagates.
    """
    changes = diff_queues(current, new)
    for name in changes.added:
        spec = new[name]
        row_ready = await _set_paused_before_add(client, name, spec.paused)
        await client.queues.add(name, spec.config)
        current[name] = QueueSpec(spec.config, None)
        if not row_ready and spec.paused:
            await client.queues.pause(name)
        current[name] = spec
    for name in changes.updated:
        old, spec = current[name], new[name]
        if old.config != spec.config:
            await client.queues.update(
                name,
                max_workers=spec.config.max_workers,
                fetch_cooldown=spec.config.fetch_cooldown,
                fetch_poll_interval=spec.config.fetch_poll_interval,
                min_workers=spec.config.min_workers,
                rate_limit=spec.config.rate_limit,
            )
            current[name] = QueueSpec(spec.config, old.paused)
        if spec.paused is not None and spec.paused != old.paused:
            if spec.paused:
                await client.queues.pause(name)
            else:
                await client.queues.resume(name)
        current[name] = spec
    for name in changes.removed:
        await client.queues.remove(name, mode="drain", timeout=drain_timeout)
        del current[name]
    for name in changes.unchanged:
        # Keep the flag as the file now states it (e.g. set -> unset), without touching anything.
        current[name] = new[name]
    return changes


def apply_periodic(
    client: AsyncClient, current: dict[str, PeriodicSpec], new: Mapping[str, PeriodicSpec]
) -> tuple[list[str], list[str], list[str]]:
    """Add, replace and remove the file's periodic jobs by id; returns (added, changed,
    removed). Jobs the app's own Config defines are not touched."""
    added, changed, removed = [], [], []
    for job_id in sorted(set(current) - set(new)):
        client.periodic_jobs.remove(job_id)
        del current[job_id]
        removed.append(job_id)
    for job_id, spec in sorted(new.items()):
        old = current.get(job_id)
        if old is not None and old.fingerprint == spec.fingerprint:
            continue
        if old is not None:
            client.periodic_jobs.remove(job_id)
            changed.append(job_id)
        else:
            added.append(job_id)
        client.periodic_jobs.add(spec.job)
        current[job_id] = spec
    return added, changed, removed


def restart_required(old: Mapping[str, object], new: Mapping[str, object]) -> list[str]:
    """Keys of settings that differ but only change on a restart."""
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
