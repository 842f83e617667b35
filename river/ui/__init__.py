"""The dashboard of river-queue: jobs, queues and periodic jobs in a browser, and a JSON API.

Serve it with ``river ui --database-url URL`` or mount ``create_app(url)`` in a Starlette,
FastAPI or Django ASGI application (docs/ui.md). It needs the ``ui`` extra
(``pip install 'river-queue[ui]'``: Starlette, and uvicorn for ``river ui``); ``import river``
never loads it.

- :func:`create_app` returns the ASGI application (a :class:`Dashboard`).
- :func:`bearer_token`, :func:`basic_auth`, :func:`auth_from_env`: built-in auth hooks; any
  callable ``(request) -> bool | Response`` (sync or async) is one too.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "river.ui needs the dashboard's dependencies: pip install 'river-queue[ui]'"
    ) from exc

from river.ui._app import Dashboard, create_app
from river.ui._auth import AuthHook, auth_from_env, basic_auth, bearer_token

__all__ = ["AuthHook", "Dashboard", "auth_from_env", "basic_auth", "bearer_token", "create_app"]
