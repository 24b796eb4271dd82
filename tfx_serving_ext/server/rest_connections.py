"""ConnectionGuard: the REST listener's cap on open connections and on time to send headers.

aiohttp closes idle kept-alive connections but waits forever for the headers of a request that
has begun, and accepts any number of connections: a thousand idle clients would take every file
descriptor of the process, the gRPC port's and the model loader's included.
"""

from __future__ import annotations

import asyncio
import logging

logger = logging.getLogger(__name__)

_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: 51\r\n\r\n"
    b'{"error": "Too many open connections; retry later"}'
)


class _GuardedProtocol(asyncio.Protocol):
    """Passes a connection's events to aiohttp's handler while the guard lets it live."""

    def __init__(self, handler: asyncio.Protocol, guard: ConnectionGuard):
        self._handler = handler
        self._guard = guard
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if not self._guard.admit(self):
            transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        self._admitted = True
        self._handler.connection_made(transport)
        self.arm(self._guard.header_timeout)

    def arm(self, seconds: float | None) -> None:
        """Closes the connection unless request headers arrive within `seconds` (None: never)."""
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if seconds is not None and self.transport is not None:
            self._deadline = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            logger.debug("Closing a REST connection that sent no complete request in time")
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._handler.data_received(data)

    def eof_received(self):
        return self._handler.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._handler.resume_writing()

    def connection_lost(self, exc) -> None:
        self.arm(None)
        self._guard.release(self)
        if self._admitted:
            self._handler.connection_lost(exc)


class ConnectionGuard:
    """Admits at most `max_connections` connections and closes those slow to send headers.

    A connection has `header_timeout` seconds from opening, and `keepalive_timeout +
    header_timeout` after each answer, to deliver a request's headers; while a request runs it
    has no deadline here (the body and the run have their own).
    """

    def __init__(self, max_connections: int, header_timeout: float, keepalive_timeout: float):
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self._open: dict[object, _GuardedProtocol] = {}

    def protocol(self, handler: asyncio.Protocol) -> asyncio.Protocol:
        """Returns the protocol for a new connection, wrapping aiohttp's `handler`."""
        return _GuardedProtocol(handler, self)

    def admit(self, connection: _GuardedProtocol) -> bool:
        """Returns whether a new connection may stay open (and counts it if so)."""
        if len(self._open) >= self.max_connections:
            logger.warning("Refusing a REST connection: %d are open", len(self._open))
            return False
        self._open[connection.transport] = connection
        return True

    def release(self, connection: _GuardedProtocol) -> None:
        """Forgets a closed connection."""
        if self._open.get(connection.transport) is connection:
            del self._open[connection.transport]

    @property
    def open_connections(self) -> int:
        """Returns how many connections are open."""
        return len(self._open)

    def request_started(self, transport) -> None:
        """Lifts the header deadline of the connection whose request's headers arrived."""
        connection = self._open.get(transport)
        if connection is not None:
            connection.arm(None)

    def request_finished(self, transport) -> None:
        """Sets the deadline for the connection's next request's headers."""
        connection = self._open.get(transport)
        if connection is not None:
            connection.arm(self.keepalive_timeout + self.header_timeout)
