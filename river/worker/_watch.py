"""Watching files: the config file (``--watch-config``) and the app's sources (``--reload``).

The config file is polled: a ``stat`` per interval is cheap, works on every file system, and
follows the symlink swaps Kubernetes uses to update mounted ConfigMaps. Sources are watched with
``watchfiles`` when it is installed (``pip install 'river-queue[reload]'``), else by polling the
modification times of ``*.py`` files under the watched directories.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import anyio

__all__ = ["Signature", "file_signature", "python_files_snapshot", "watch_file", "watch_sources"]

logger = logging.getLogger("river.worker")

#: Directory names never walked when polling sources.
_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"})

Signature = tuple[int, int, int] | None

#: Longest wait of watchfiles' thread before it looks for a stop request again (its default,
#: 5 s, delayed every stop of --reload by up to that much).
_WATCHFILES_TIMEOUT_MS = 500


def file_signature(path: str) -> Signature:
    """What changes when the file does: (inode, size, mtime in ns); None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def watch_file(
    path: str, interval: float, on_change: Callable[[], None], initial: Signature = None
) -> None:
    """Call ``on_change`` each time ``path`` changes (polled every ``interval`` s), forever.

    ``initial`` is the signature of the version already loaded (taken before reading it), so
    that a change made while the process was starting is not missed."""
    last = initial if initial is not None else file_signature(path)
    while True:
        await anyio.sleep(interval)
        current = file_signature(path)
        if current != last:
            last = current
            on_change()


def python_files_snapshot(dirs: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{path: (mtime_ns, size)}`` of every ``*.py`` under ``dirs`` (hidden dirs skipped)."""
    out: dict[str, tuple[int, int]] = {}
    for top in dirs:
        for root, subdirs, files in os.walk(top):
            subdirs[:] = [d for d in subdirs if not d.startswith(".") and d not in _SKIP_DIRS]
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _watchfiles() -> Any:
    try:
        return importlib.import_module("watchfiles")
    except ImportError:
        return None


async def watch_sources(
    dirs: Sequence[str],
    interval: float,
    on_change: Callable[[set[str]], None],
    *,
    use_watchfiles: bool = True,
) -> None:
    """Call ``on_change`` with the changed ``*.py`` paths under ``dirs``, forever."""
    module = _watchfiles() if use_watchfiles else None
    if module is not None:
        logger.info("watching %s for changes (watchfiles)", ", ".join(dirs))
        # awatch waits in a thread that a cancellation cannot interrupt: only its stop event
        # (checked every `step` ms) or its timeout ends the wait. Set the event as soon as this
        # task is cancelled, so that a stop does not wait out the timeout.
        stop = anyio.Event()

        async def consume() -> None:
            async for changes in module.awatch(
                *dirs,
                watch_filter=module.PythonFilter(),
                debounce=400,
                step=50,
                stop_event=stop,
                rust_timeout=_WATCHFILES_TIMEOUT_MS,
            ):
                changed = {path for _, path in changes}
                if changed:
                    on_change(changed)

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            try:
                await anyio.sleep_forever()
            finally:
                stop.set()
        return
    logger.info("watching %s for changes (polling every %gs)", ", ".join(dirs), interval)
    last = await anyio.to_thread.run_sync(python_files_snapshot, dirs)
    while True:
        await anyio.sleep(interval)
        current = await anyio.to_thread.run_sync(python_files_snapshot, dirs)
        if current != last:
            changed = {p for p in set(current) | set(last) if current.get(p) != last.get(p)}
            last = current
            on_change(changed)
