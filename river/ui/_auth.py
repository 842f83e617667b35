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
import os
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

__all__ = ["AuthHook", "AuthResult", "auth_from_env", "basic_auth", "bearer_token"]

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


def bearer_token(token: str) -> AuthHook:
    """Allow requests that carry ``token``: scripts send ``Authorization: Bearer <token>``; a
    browser opens the dashboard once with ``?token=<token>`` and is redirected to the same
    page without it, holding an HttpOnly, SameSite=Strict cookie (a digest of the token, never
    the token) for the dashboard's path. Everything else: 401."""
    if not isinstance(token, str) or len(token) < 16:
        raise ValueError("bearer_token: the token must be a string of at least 16 characters")
    cookie_value = hashlib.sha256(b"river-ui-cookie:" + token.encode()).hexdigest()

    def check(request: Request) -> AuthResult:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), token):
            return True
        if _same(request.cookies.get(TOKEN_COOKIE, ""), cookie_value):
            return True
        offered = request.query_params.get("token")
        if offered is not None and request.method == "GET" and _same(offered, token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                TOKEN_COOKIE,
                cookie_value,
                path=(request.scope.get("root_path") or "") + "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
            return response
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
