"""A tripwire on this process's own sockets: which hosts were looked up and which addresses were
connected to while a test ran.

Tests that name private, link-local or metadata URLs (to check they are refused) use it to show that
none of them was ever looked up or connected to. It watches the standard library's socket layer
(``socket.getaddrinfo`` and ``socket.socket.connect``/``connect_ex``, which asyncio and httpx end
in), and only records: every call still goes through, so the broker and the test client work.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass
class WireLog:
    lookups: list[tuple[str, int | None]] = field(default_factory=list)
    connects: list[tuple[str, int]] = field(default_factory=list)

    @staticmethod
    def has_host_and_port(url: str) -> bool:
        """False for a URL too malformed to name a host and port (nobody could connect to it)."""
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError:
            return False
        return bool(parts.hostname)

    def touched(self, url: str) -> list[str]:
        """Every lookup or connection that went to ``url``'s host and port."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        hits = [
            f"lookup {h}:{p}" for h, p in self.lookups if h.lower().strip("[]") == host and p in (port, None)
        ]
        hits += [f"connect {h}:{p}" for h, p in self.connects if h.lower() == host and p == port]
        return hits


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> WireLog:
    log = WireLog()
    getaddrinfo = socket.getaddrinfo
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex

    def _port(port: Any) -> int | None:
        try:
            return int(port) if port is not None else None
        except (TypeError, ValueError):
            return None

    def recording_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode("idna", "replace")
        log.lookups.append((str(host), _port(port)))
        return getaddrinfo(host, port, *args, **kwargs)

    def _record(address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2:
            log.connects.append((str(address[0]), int(address[1])))

    def recording_connect(self: socket.socket, address: Any) -> None:
        _record(address)
        connect(self, address)

    def recording_connect_ex(self: socket.socket, address: Any) -> int:
        _record(address)
        return connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", recording_connect_ex)
    return log  # monkeypatch undoes the patches after the test
