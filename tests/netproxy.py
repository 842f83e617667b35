"""A TCP proxy in front of the test Postgres that a test can cut or freeze, to simulate a
client host losing its network (real connections, real server; nothing is mocked).

- ``cut()``: new connections are accepted and closed at once (connection refused, in effect),
  also one still being set up when it is called; existing ones are left to the test.
- ``sever()``: ``cut()``, and every connection through the proxy ends now (a
  ``pg_terminate_backend`` of the database's sessions misses one whose backend is still
  starting: it has no database yet).
- ``freeze()``: bytes stop flowing on every connection open now, in both directions, without
  closing anything (a silent dead link, only a liveness probe can notice); new connections
  work normally.
- ``mend()``: undoes ``cut()``.
- ``linger()``: from now on, a connection the server closes stays open towards the client:
  what the server sent before closing arrives, the end of the stream does not.
"""

from __future__ import annotations

import asyncio

from psycopg import conninfo


class CuttableProxy:
    """See module doc. Use as ``async with CuttableProxy(host, port) as proxy``."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.blocked = False
        self.lingering = False
        self.port = 0
        self._generation = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.blocked = True

    def sever(self) -> None:
        self.blocked = True
        for w in list(self._writers):
            w.close()

    def mend(self) -> None:
        self.blocked = False

    def linger(self) -> None:
        self.lingering = True

    def freeze(self) -> None:
        self._generation += 1

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        if self.blocked:  # cut while this one was being set up
            up_writer.close()
            writer.close()
            return
        self._writers.update((writer, up_writer))
        generation = self._generation

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self._generation != generation:
                        await asyncio.sleep(3600)  # frozen: hold the bytes forever
                    dst.write(data)
                    await dst.drain()
                if self.lingering and dst is writer:
                    await asyncio.sleep(3600)  # the server closed: keep the client's side open
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()
                self._writers.discard(dst)

        for task in (
            asyncio.ensure_future(pipe(reader, up_writer)),
            asyncio.ensure_future(pipe(up_reader, writer)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def url(self, db_url: str, application_name: str) -> str:
        """``db_url`` rewritten to go through this proxy, with an application_name that
        identifies the connections in pg_stat_activity."""
        params = conninfo.conninfo_to_dict(db_url)
        params.update(
            host="127.0.0.1",
            port=str(self.port),
            application_name=application_name,
            sslmode="disable",
        )
        return conninfo.make_conninfo("", **params)


def server_address(db_url: str) -> tuple[str, int]:
    """Host and port of the server behind ``db_url`` (TCP)."""
    params = conninfo.conninfo_to_dict(db_url)
    return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)
