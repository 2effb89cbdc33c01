"""A UDP socket on loopback standing in for the X-Ray daemon Lambda runs (closedloop.tracing's tests)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def udp_daemon() -> Iterator[socket.socket]:
    """A bound, non-blocking UDP socket: sending on loopback is synchronous, so what was sent is here."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def received(daemon: socket.socket) -> list[dict[str, Any]]:
    """Every document sent so far, each checked for the daemon's header line."""
    documents = []
    while True:
        try:
            datagram = daemon.recv(65535)
        except BlockingIOError:
            return documents
        header, _, body = datagram.partition(b"\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        documents.append(json.loads(body))
