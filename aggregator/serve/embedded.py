"""uvicorn inside another program's event loop, behind a small interface.

uvicorn's own loop (`Server.serve`) wakes ten times a second to refresh the Date header
and installs its own signal handlers. A daemon that owns the signals and should sleep
while idle runs the server's start-up and shutdown itself, with a Date header made per
response instead of per tick: `await EmbeddedServer(server).serve(stop)`.
"""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import uvicorn
from uvicorn.server import ServerState


class EmbeddedServer:
    """Serves until `stop` is set; `started` once the port is bound and requests flow."""

    def __init__(self, server: uvicorn.Server):
        self._server = server

    @property
    def started(self) -> bool:
        return self._server.started

    async def serve(self, stop: asyncio.Event) -> None:
        server, config = self._server, self._server.config
        if not config.loaded:
            config.load()
        server.server_state = _DateOnDemand(config.encoded_headers)
        server.lifespan = config.lifespan_class(config)
        await server.startup()
        if not server.should_exit:  # it could bind
            await stop.wait()
        await server.shutdown()

    def stop(self) -> None:
        """Stop accepting requests; `serve` then finishes the ones in flight and returns."""
        self._server.should_exit = True


class _DateOnDemand(ServerState):
    """uvicorn's ServerState whose default headers (Date) are made when a response asks."""

    def __init__(self, encoded_headers: list[tuple[bytes, bytes]]):
        super().__init__()
        self._encoded = encoded_headers

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"date", formatdate(usegmt=True).encode()), *self._encoded]

    @default_headers.setter
    def default_headers(self, value: list) -> None:
        pass  # uvicorn's tick would set a cached copy; there is no tick
