"""Who may use the dashboard: the auth hook and its built-ins.

An auth hook is any callable taking the Starlette ``Request`` and returning (or, when it is a
coroutine function, awaiting to) one of:

- a truthy value: the request goes on;
- a falsy value: the dashboard answers 403;
- a Starlette ``Response``: sent as it is (a 401 with ``WWW-Authenticate``, a redirect to a
  login page of the host application...).

It runs before everything else, on every request: pages, assets and the JSON API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import os
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["AuthHook", "AuthResult", "auth_from_env", "basic_auth", "bearer_token", "safe_path"]

AuthResult = bool | Response | None
#: See the module doc.
AuthHook = Callable[[Request], AuthResult | Awaitable[AuthResult]]

#: Environment variables read by :func:`auth_from_env` (and so by ``river ui``).
TOKEN_ENV = "RIVER_UI_TOKEN"
BASIC_AUTH_ENV = "RIVER_UI_BASIC_AUTH"
#: The cookie a browser keeps after signing in with ``?token=`` (see :func:`bearer_token`).
TOKEN_COOKIE = "river_ui_token"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _unauthorized(challenge: str, message: str) -> Response:
    return JSONResponse(
        {"error": message}, status_code=401, headers={"WWW-Authenticate": challenge}
    )


def safe_path(path: str) -> str:
    """``path`` as a redirect target that stays on this origin: one leading slash, so that
    neither ``//host/...`` nor ``/\\host/...`` (which browsers read as another host) nor a
    scheme can come out of it."""
    return "/" + path.lstrip("/\\")


#: Most bytes of a sign-in form read (a token and a path).
_MAX_FORM = 8192

_LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Sign in · River</title>
</head>
<body>
<main>
<h1>River dashboard</h1>
<p>{message}</p>
<form method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<p><label>Token <input type="password" name="token" autocomplete="current-password" required
autofocus></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p>Scripts send the header <code>Authorization: Bearer &lt;token&gt;</code>.</p>
</main>
</body>
</html>
"""


def _login_page(action: str, target: str, message: str, status: int = 401) -> Response:
    text = _LOGIN_PAGE.format(
        action=html.escape(action, quote=True),
        next=html.escape(target, quote=True),
        message=html.escape(message),
    )
    return HTMLResponse(
        text, status_code=status, headers={"WWW-Authenticate": 'Bearer realm="River"'}
    )


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small ``application/x-www-form-urlencoded`` body (first value each)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return {}
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def bearer_token(token: str) -> AuthHook:
    """Allow requests that carry ``token``: scripts send ``Authorization: Bearer <token>``; a
    browser signs in once, through the sign-in form the dashboard shows it (a POST: the token
    stays out of the URL, the history and the access logs), or by opening a page with
    ``?token=<token>`` (redirected at once to the same page without it; the URL with the token
    is in the server's access log and the browser's history). Either way it then holds an
    HttpOnly, SameSite=Strict cookie (a digest of the token, never the token) for the
    dashboard's path. Everything else: 401 (the sign-in form for a browser's page request)."""
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError("bearer_token: the token must be a string of at least 16 characters")
    cookie_value = hashlib.sha256(b"river-ui-cookie:" + token.encode()).hexdigest()

    def signed_in(request: Request, target: str) -> Response:
        root = request.scope.get("root_path") or ""
        response = RedirectResponse(safe_path(target), status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            cookie_value,
            path=root + "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def check(request: Request) -> AuthResult:
        root = (request.scope.get("root_path") or "").rstrip("/")
        login = root + "/login"
        if request.method == "POST" and request.url.path == login:
            fields = await _form(request)
            target = fields.get("next", "")
            if not (target == root or target.startswith(root + "/")):
                target = root + "/"
            if _same(fields.get("token", ""), token):
                return signed_in(request, target)
            return _login_page(login, safe_path(target), "Wrong token: try again.", 403)
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), token):
            return True
        if _same(request.cookies.get(TOKEN_COOKIE, ""), cookie_value):
            return True
        offered = request.query_params.get("token")
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        here = safe_path(request.url.path) + ("?" + urlencode(rest) if rest else "")
        if offered is not None and request.method == "GET" and _same(offered, token):
            return signed_in(request, here)
        path = request.url.path
        page = not path.startswith((root + "/api/", root + "/static/"))
        if request.method == "GET" and page and "text/html" in request.headers.get("accept", ""):
            return _login_page(login, here, "Sign in with the dashboard's token.")
        return _unauthorized('Bearer realm="River"', "authentication required (bearer token)")

    return check


def basic_auth(username: str, password: str, *, realm: str = "River") -> AuthHook:
    """Allow HTTP basic authentication with this user name and password (the browser asks
    for them); everything else: 401. Use it behind HTTPS."""
    if not username or not password:
        raise ValueError("basic_auth: give a user name and a password")
    if '"' in realm or "\\" in realm:
        raise ValueError("basic_auth: the realm cannot hold quotes or backslashes")

    def check(request: Request) -> AuthResult:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, sep, secret = decoded.partition(":")
            # Both compared, always: the time taken says nothing about which one was wrong.
            user_ok = _same(user, username)
            secret_ok = _same(secret, password)
            if sep and user_ok and secret_ok:
                return True
        return _unauthorized(
            f'Basic realm="{realm}", charset="UTF-8"', "authentication required (basic)"
        )

    return check


def auth_from_env(environ: Mapping[str, str] | None = None) -> AuthHook | None:
    """The built-in hook that the environment asks for: :func:`bearer_token` with
    ``$RIVER_UI_TOKEN``, or :func:`basic_auth` with ``$RIVER_UI_BASIC_AUTH``
    (``user:password``); None when neither is set. Both set: ValueError."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "")
    basic = env.get(BASIC_AUTH_ENV, "")
    if token and basic:
        raise ValueError(f"set {TOKEN_ENV} or {BASIC_AUTH_ENV}, not both")
    if token:
        return bearer_token(token)
    if basic:
        user, sep, password = basic.partition(":")
        if not sep:
            raise ValueError(f"{BASIC_AUTH_ENV} must be user:password")
        return basic_auth(user, password)
    return None
