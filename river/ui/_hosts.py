"""Which ``Host`` header values the dashboard answers: the defence against DNS rebinding.

A page on ``attacker.example`` whose name the attacker re-points at 127.0.0.1 (or at an address
of your network) makes the victim's browser send requests to the dashboard that the browser
treats as same-origin with the attacker's page: it can read the answers, the CSRF token among
them. Those requests carry ``Host: attacker.example``. Refusing host names the dashboard was not
told about stops them; an auth hook stops them too (the attacker's origin holds no credential).

So, by default (``allowed_hosts=None``): with an auth hook every host name is accepted; without
one, only loopback names (``localhost``, any address of 127.0.0.0/8, ``[::1]``, with any port).
Loopback names are always accepted: a browser sends them only to a page of that very origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["LOOPBACK_NAMES", "HostPolicy", "is_loopback", "split_host"]

#: The loopback names the dashboard always answers (any address of 127.0.0.0/8 too).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def split_host(value: str) -> tuple[str, str | None] | None:
    """``(host, port)`` of a ``Host`` header value, lower-cased (an IPv6 address keeps its
    brackets); None when it is malformed."""
    value = value.strip().lower()
    if not value:
        return None
    port: str | None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        host, sep, after = value.partition(":")
        if ":" in after:
            return None
        port = after if sep else None
    if port is not None and not port.isdigit():
        return None
    if not host or host == "[]":
        return None
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) names this
    machine: ``localhost``, an address of 127.0.0.0/8, or ``::1``."""
    host = host.strip().lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _entry(name: str) -> str:
    """An ``allowed_hosts`` entry as :func:`split_host` writes a header (bare IPv6 bracketed)."""
    name = name.strip().lower()
    if name.count(":") > 1 and not name.startswith("["):
        name = f"[{name}]"
    return name


class HostPolicy:
    """The host names one dashboard answers (see module doc).

    ``allowed``: names (``"jobs.example.com"``: any port) or names with a port
    (``"jobs.example.com:8443"``); ``"*"`` accepts any. None: any with ``auth``, else
    loopback names only."""

    def __init__(self, allowed: Sequence[str] | None, *, auth: bool) -> None:
        if isinstance(allowed, str):
            raise TypeError("allowed_hosts takes a list of host names, not one string")
        self.explicit = allowed is not None
        self.names = frozenset(_entry(h) for h in allowed or () if h.strip())
        self.any = "*" in self.names or (allowed is None and auth)

    def allows(self, header: str) -> bool:
        """Whether a request with this ``Host`` header value may go on."""
        if self.any:
            return True
        parts = split_host(header)
        if parts is None:
            return False
        host, port = parts
        if is_loopback(host):
            return True
        return host in self.names or (port is not None and f"{host}:{port}" in self.names)

    def refusal(self, header: str) -> str:
        """Why ``header`` was refused, naming the setting that would allow it."""
        shown = header[:100] if header else "(none)"
        if self.explicit:
            return (
                f"host {shown!r} is not allowed: add it to allowed_hosts (create_app) or "
                "--allowed-host (river ui)"
            )
        return (
            f"host {shown!r} is not allowed: without an auth hook the dashboard answers only "
            "localhost, 127.0.0.1 and [::1] (a page on another domain could reach it through "
            "DNS rebinding); name the hosts to serve in allowed_hosts (create_app) or "
            "--allowed-host (river ui), or set an auth hook (RIVER_UI_TOKEN)"
        )
