"""``create_app``: the dashboard as an ASGI application, and the security around it.

Every request goes through :class:`Dashboard.__call__` in this order:

1. Host check (river/ui/_hosts.py): without an auth hook only loopback names unless
   ``allowed_hosts`` names others, so that a DNS-rebinding page cannot reach the dashboard;
   400 naming the setting otherwise.
2. The auth hook (river/ui/_auth.py): 401/403 or the hook's own response.
3. Mutations: only POST; refused with 403 in read-only mode; then the CSRF checks: the
   per-app token in the ``X-River-CSRF`` header, ``Sec-Fetch-Site`` (when the browser sends it)
   ``same-origin`` or ``none``, and ``Origin`` (when sent) naming this host.
4. The routes: the page (one HTML document for every page path, the same for all: no data in
   it), its assets (shipped inside the package, never fetched from elsewhere), the JSON API.

Every response carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline script, no ``eval``, no connection elsewhere, no framing) and ``nosniff``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import inspect
import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from river._client import AsyncClient
from river._errors import RiverError
from river._names import validate_schema
from river._version import __version__
from river.ui._api import Api
from river.ui._auth import AuthHook
from river.ui._hosts import HostPolicy
from river.ui._store import Store

__all__ = ["CSRF_HEADER", "Dashboard", "create_app"]

#: The header that carries the CSRF token of a mutation.
CSRF_HEADER = "x-river-csrf"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

#: The assets of the page (river/ui/static), by URL name: content type.
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


def _load_assets() -> tuple[dict[str, _Asset], str]:
    files = resources.files("river.ui").joinpath("static")
    assets = {}
    digest = hashlib.sha256()
    for name, content_type in _ASSETS.items():
        body = files.joinpath(name).read_bytes()
        digest.update(body)
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[name] = _Asset(body, content_type, etag)
    template = files.joinpath("index.html").read_text(encoding="utf-8")
    return assets, template.replace("{{asset_version}}", digest.hexdigest()[:12])


class Dashboard:
    """The dashboard: an ASGI application (mount it, or serve it with any ASGI server).

    Made by :func:`create_app`. It opens its connection pool on the first request; call
    :meth:`close` when the application shuts down (served on its own, as ``river ui`` does,
    its ASGI lifespan does it)."""

    def __init__(
        self,
        store: Store,
        *,
        client: AsyncClient | None,
        read_only: bool,
        auth: AuthHook | None,
        allowed_hosts: Sequence[str] | None,
        title: str,
        csrf_token: str,
    ) -> None:
        self.read_only = read_only
        self._store = store
        self._auth = auth
        self._hosts = HostPolicy(allowed_hosts, auth=auth is not None)
        self._csrf = csrf_token
        self._title = title
        self._assets, self._template = _load_assets()
        self.api = Api(
            store, client=client, read_only=read_only, csrf_token=csrf_token, title=title
        )
        api = self.api
        e = api.endpoint
        routes = [
            Route("/", self._page, methods=["GET"]),
            Route("/jobs", self._page, methods=["GET"]),
            Route("/jobs/{rest:path}", self._page, methods=["GET"]),
            Route("/queues", self._page, methods=["GET"]),
            Route("/queues/{rest:path}", self._page, methods=["GET"]),
            Route("/periodic", self._page, methods=["GET"]),
            Route("/static/{name}", self._asset, methods=["GET"]),
            Route("/api/meta", e(api.meta), methods=["GET"]),
            Route("/api/overview", e(api.overview), methods=["GET"]),
            Route("/api/counts", e(api.counts), methods=["GET"]),
            Route("/api/throughput", e(api.throughput), methods=["GET"]),
            Route("/api/kinds", e(api.kinds), methods=["GET"]),
            Route("/api/jobs", e(api.jobs), methods=["GET"]),
            Route("/api/jobs/count", e(api.jobs_count), methods=["GET"]),
            Route("/api/jobs/bulk", e(api.jobs_bulk), methods=["POST"]),
            # Not a job id: GET /api/jobs/{job_id} would answer 400 "'bulk' is not an integer".
            Route("/api/jobs/bulk", self._bulk_not_get, methods=["GET"]),
            Route("/api/jobs/{job_id}", e(api.job), methods=["GET"]),
            Route("/api/jobs/{job_id}/{action}", e(api.job_action), methods=["POST"]),
            Route("/api/queues", e(api.queues), methods=["GET"]),
            Route("/api/queues/{name}", e(api.queue), methods=["GET"]),
            Route("/api/queues/{name}/{action}", e(api.queue_action), methods=["POST"]),
            # The same with ?name=, for a queue name that cannot be a path segment ("..").
            Route("/api/queue", e(api.queue), methods=["GET"]),
            Route("/api/queue/{action}", e(api.queue_action), methods=["POST"]),
            Route("/api/periodic", e(api.periodic), methods=["GET"]),
            Route("/api/{rest:path}", self._api_not_found, methods=["GET", "POST"]),
        ]
        self._app = Starlette(routes=routes, lifespan=self._lifespan)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the dashboard's own connection pool (a later request opens a new one)."""
        await self._store.close()

    # --- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in names]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope, receive)
        refusal = await self._refusal(request)
        if refusal is not None:
            await refusal(scope, receive, secured)
            return
        await self._app(scope, receive, secured)

    async def _refusal(self, request: Request) -> Response | None:
        """The answer that stops ``request`` before the routes, if any (see module doc)."""
        host = request.headers.get("host", "")
        if not self._hosts.allows(host):
            return _error(400, self._hosts.refusal(host), "host")
        if self._auth is not None:
            verdict = self._auth(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if isinstance(verdict, Response):
                return verdict
            if not verdict:
                return _error(403, "forbidden by the dashboard's auth hook")
        method = request.method
        if method in ("GET", "HEAD"):
            return None
        if method != "POST":
            return _error(405, f"method {method} not allowed")
        if self.read_only:
            return _error(403, "the dashboard is read-only")
        return self._csrf_refusal(request)

    def _csrf_refusal(self, request: Request) -> Response | None:
        token = request.headers.get(CSRF_HEADER, "")
        if not token or not hmac.compare_digest(token.encode(), self._csrf.encode()):
            return _error(403, f"missing or wrong CSRF token (header {CSRF_HEADER})", "csrf")
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return _error(403, f"cross-site request refused (Sec-Fetch-Site: {site})", "csrf")
        origin = request.headers.get("origin")
        if origin is not None:
            _, _, origin_host = origin.partition("://")
            host = request.headers.get("host", "")
            if origin == "null" or not origin_host or origin_host.lower() != host.lower():
                return _error(403, "cross-origin request refused (Origin)", "csrf")
        return None

    # --- pages and assets ----------------------------------------------------------------------

    async def _page(self, request: Request) -> Response:
        base = (request.scope.get("root_path") or "").rstrip("/")
        values = {
            "base": base,
            "csrf": self._csrf,
            "title": self._title,
            "version": __version__,
            "read_only": "true" if self.read_only else "false",
        }
        text = self._template
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", html.escape(value, quote=True))
        return Response(text, media_type="text/html; charset=utf-8")

    async def _asset(self, request: Request) -> Response:
        asset = self._assets.get(request.path_params["name"])
        if asset is None:
            return _error(404, "no such asset")
        # Behind an auth hook the assets are the dashboard's too: no shared cache keeps them.
        cache = "private" if self._auth is not None else "public"
        headers = {"etag": asset.etag, "cache-control": f"{cache}, max-age=3600"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    async def _bulk_not_get(self, request: Request) -> Response:
        return _method_not_allowed(request, {"POST"})

    async def _api_not_found(self, request: Request) -> Response:
        """404, or 405 when an endpoint has this path with other methods."""
        allowed: set[str] = set()
        for route in self._app.routes:
            if isinstance(route, Route) and route.path != "/api/{rest:path}":
                match, _ = route.matches(request.scope)
                if match is Match.PARTIAL and route.methods:
                    allowed |= route.methods
        if allowed:
            return _method_not_allowed(request, allowed)
        return _error(404, f"no endpoint {request.url.path}")


def _method_not_allowed(request: Request, allowed: set[str]) -> Response:
    methods = ", ".join(sorted(allowed))
    response = _error(405, f"method {request.method} not allowed here: use {methods}")
    response.headers["allow"] = methods
    return response


def _error(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def create_app(
    database: str | AsyncConnectionPool[Any] | None = None,
    *,
    client: AsyncClient | None = None,
    schema: str | None = None,
    read_only: bool = False,
    auth: AuthHook | None = None,
    allowed_hosts: Sequence[str] | None = None,
    title: str = "River",
    csrf_token: str | None = None,
    pool_size: int = 4,
    statement_timeout: float = 10.0,
    wait_timeout: float = 3.0,
) -> Dashboard:
    """The dashboard as an ASGI application: mount it in a Starlette or FastAPI app
    (``app.mount("/jobs", create_app(url))``), route a Django ASGI project to it, or serve it
    alone (``river ui``). docs/ui.md shows each.

    - ``database``: a ``postgresql://`` URL (the dashboard opens a pool of at most
      ``pool_size`` connections on its first request, each with a ``statement_timeout`` in
      seconds), or an open ``psycopg_pool.AsyncConnectionPool`` of yours. Required: the
      dashboard never borrows a client's connections.
    - ``client``: your application's :class:`river.AsyncClient`: its periodic jobs (schedule
      and next run) show on the periodic page, and its schema is the default ``schema``.
    - ``schema``: schema of the River tables (default: the client's, else the search path).
    - ``read_only``: no mutation buttons on the page; every POST answered 403.
    - ``auth``: a hook deciding who may use the dashboard (river.ui.bearer_token,
      river.ui.basic_auth, river.ui.auth_from_env, or yours; see river/ui/_auth.py). None
      lets every request in: keep such a dashboard on localhost or behind your own auth.
    - ``allowed_hosts``: host names accepted in the ``Host`` header (``"jobs.example.com"``,
      or with a port, ``"jobs.example.com:8443"``; ``"*"``: any), besides the loopback names
      (localhost, 127.0.0.0/8, [::1]) which are always accepted. None: any host name when
      ``auth`` is set, else the loopback names only (a DNS-rebinding page cannot reach a
      dashboard without auth; river/ui/_hosts.py).
    - ``csrf_token``: the token mutations must carry (default: random per app). Give the same
      one to every process serving one dashboard behind a load balancer.
    - ``wait_timeout``: seconds a request waits for a connection before answering 503 (the
      database is down, or every connection is busy: the message says which); the page shows
      a banner and retries.
    - ``statement_timeout``: seconds a statement of the dashboard may run (504 beyond), set
      per transaction, so that it holds on a pool of yours too.
    """
    if database is None:
        raise RiverError(
            "create_app needs database=: a postgresql:// URL or an AsyncConnectionPool (the "
            "dashboard keeps connections of its own, apart from the client's)"
        )
    if client is not None and not isinstance(client, AsyncClient):
        raise RiverError("create_app(client=...) takes a river.AsyncClient")
    if schema is None and client is not None:
        schema = client.config.schema
    schema = validate_schema(schema, field="schema")
    if not 1 <= pool_size <= 100:
        raise RiverError("create_app: pool_size must be between 1 and 100")
    if not 0.1 <= statement_timeout <= 3600:
        raise RiverError("create_app: statement_timeout must be between 0.1 and 3600 seconds")
    if not 0.1 <= wait_timeout <= 60:
        raise RiverError("create_app: wait_timeout must be between 0.1 and 60 seconds")
    if csrf_token is not None and len(csrf_token) < 16:
        raise RiverError("create_app: csrf_token must be at least 16 characters")
    if isinstance(allowed_hosts, str):
        raise RiverError("create_app: allowed_hosts takes a list of host names, not a string")
    store = Store(
        database,
        schema=schema,
        pool_size=pool_size,
        statement_timeout=statement_timeout,
        wait_timeout=wait_timeout,
    )
    return Dashboard(
        store,
        client=client,
        read_only=read_only,
        auth=auth,
        allowed_hosts=allowed_hosts,
        title=title,
        csrf_token=csrf_token or secrets.token_urlsafe(32),
    )
