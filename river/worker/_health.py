"""A tiny HTTP server for health checks and Prometheus metrics (stdlib + anyio only).

It answers ``GET`` (and ``HEAD``) with ``Connection: close``; the routes are an async function
of the path returning ``(status, body)``. It is meant for probes and scrapers on a private
port, not for the open internet: requests are bounded in size and time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = [
    "ListenError",
    "Routes",
    "fetch",
    "listen",
    "metric_line",
    "relabel_metrics",
    "serve",
    "serve_on",
]

logger = logging.getLogger("river.worker")

#: A route table: path -> (HTTP status, text body).
Routes = Callable[[str], Awaitable[tuple[int, str]]]

_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 5.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


async def _handle(stream: SocketStream, routes: Routes) -> None:
    async with stream:
        try:
            with anyio.fail_after(_REQUEST_TIMEOUT):
                buffered = BufferedByteReceiveStream(stream)
                head = await buffered.receive_until(b"\r\n", _MAX_REQUEST)
            parts = head.decode("latin-1").split()
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, body = 405, "method not allowed\n"
            else:
                path = parts[1].split("?", 1)[0]
                status, body = await routes(path)
            payload = body.encode()
            content_type = (
                PROMETHEUS_CONTENT_TYPE if body.startswith("# ") else "text/plain; charset=utf-8"
            )
            reason = HTTPStatus(status).phrase
            header = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            ).encode()
            send_body = not (parts and parts[0] == "HEAD")
            await stream.send(header + (payload if send_body else b""))
        except (
            TimeoutError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.DelimiterNotFound,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
            OSError,
        ):
            pass  # a probe that hung up or sent garbage: nothing to answer


class ListenError(OSError):
    """The health address cannot be listened on (taken, not a local address...); ``str()`` is
    one line naming the setting, the address and the reason."""


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(
    host: str, port: int, setting: str = "the health address"
) -> Listener[SocketStream]:
    """A listener on ``host:port``; raises :class:`ListenError` naming ``setting`` (the flag or
    the file's key the address came from)."""
    try:
        return await anyio.create_tcp_listener(local_host=host, local_port=port, reuse_port=False)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ListenError(f"cannot listen on {setting} {_shown(host, port)}: {reason}") from None


async def serve_on(listener: Listener[SocketStream], routes: Routes) -> None:
    """Serve ``routes`` on ``listener`` (which it closes) until cancelled."""
    host = listener.extra(SocketAttribute.local_address)
    bound = listener.extra(SocketAttribute.local_port)
    shown = _shown(host[0] if isinstance(host, tuple) else str(host), bound)
    logger.info("health endpoints on http://%s (/livez /readyz /metrics)", shown)

    async def handler(stream: SocketStream) -> None:
        await _handle(stream, routes)

    async with listener:
        await listener.serve(handler)


async def serve(
    host: str,
    port: int,
    routes: Routes,
    *,
    setting: str = "the health address",
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``routes`` on ``host:port`` until cancelled; reports the bound port as started.
    Raises :class:`ListenError` (before reporting started) when it cannot listen."""
    listener = await listen(host, port, setting)
    task_status.started(listener.extra(SocketAttribute.local_port))
    await serve_on(listener, routes)


async def fetch(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``path`` from a health server; returns (status, body). Raises OSError/TimeoutError."""
    with anyio.fail_after(timeout):
        async with await anyio.connect_tcp(host, port) as stream:
            await stream.send(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            chunks = []
            try:
                while True:
                    chunks.append(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"bad HTTP response from {host}:{port}")
    return int(status_line[1]), body.decode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    """One sample in the Prometheus text format (floats written exactly: a sum of durations
    must not lose digits)."""
    text = repr(value) if isinstance(value, float) else str(value)
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        return f"{name}{{{inner}}} {text}"
    return f"{name} {text}"


def relabel_metrics(texts: Iterable[tuple[dict[str, str], str]]) -> list[str]:
    """Merge several Prometheus text exposures into one, adding labels to every sample of each
    (e.g. ``process="0"``). Families stay grouped (one HELP/TYPE each), as the format requires."""
    families: dict[str, list[str]] = {}
    headers: dict[str, list[str]] = {}
    for labels, text in texts:
        extra = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                words = line.split(maxsplit=3)
                if len(words) >= 3 and words[1] in ("HELP", "TYPE"):
                    family = words[2]
                    known = headers.setdefault(family, [])
                    if line not in known:
                        known.append(line)
                    families.setdefault(family, [])
                continue
            name, brace, rest = line.partition("{")
            if brace:
                sep = "" if rest.startswith("}") else ","
                sample = f"{name}{{{extra}{sep}{rest}"
            else:
                metric, _, value = line.partition(" ")
                sample = f"{metric}{{{extra}}} {value}"
            families.setdefault(family or name, []).append(sample)
    out: list[str] = []
    for family, samples in families.items():
        out.extend(headers.get(family, []))
        out.extend(samples)
    return out
