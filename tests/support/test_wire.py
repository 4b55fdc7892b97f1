"""The tripwire sees what it must: a lookup and a connection made while it is on."""

from __future__ import annotations

import socket

from tests.support.wire import WireLog


def test_a_lookup_and_a_connection_are_recorded(wire: WireLog) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        url = f"http://127.0.0.1:{port}/x.jpg"
        assert wire.touched(url) == []
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        assert wire.touched(url), wire
    socket.getaddrinfo("localhost", 80)
    assert wire.touched("http://localhost/x.jpg") == ["lookup localhost:80"]
    assert not wire.has_host_and_port("http://[::1")
