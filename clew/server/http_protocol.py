"""The HTTP protocol ``clew server`` runs: uvicorn's h11 one, with Nagle's algorithm off.

With ``--workers`` above 1, uvicorn binds the listening socket itself without naming TCP as its
protocol, and asyncio then leaves Nagle's algorithm on for every accepted connection: each
answer on a reused connection waited for the client's delayed ACK, about 40 ms (0.7 ms
with one worker, where asyncio binds the socket and sets ``TCP_NODELAY``).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        connection = transport.get_extra_info("socket")
        if connection is not None and connection.family in (socket.AF_INET, socket.AF_INET6):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
