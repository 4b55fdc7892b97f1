"""Readiness checks and port choice for the local stack."""

from __future__ import annotations

import socket

import httpx

from pawstream.broker import free_port, port_open
from pawstream.errors import PawstreamError


def tcp_check(host: str, port: int) -> str | None:
    return None if port_open(host, port) else f"nothing listens on {host}:{port} yet"


def http_check(url: str, timeout_s: float = 2.0) -> str | None:
    """Ready when ``url`` answers 200; otherwise the status (and a reason from a JSON body)."""
    try:
        response = httpx.get(url, timeout=timeout_s, trust_env=False)
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}"
    if response.status_code == 200:
        return None
    detail = ""
    with_details = response.headers.get("content-type", "").startswith("application/json")
    if with_details:
        body = response.json()
        if isinstance(body, dict) and body.get("details"):
            detail = f": {body['details']}"
    return f"{url} answered {response.status_code}{detail}"


def port_free(host: str, port: int) -> bool:
    """Whether a server could bind ``host:port`` now (SO_REUSEADDR, as servers set it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class PortInUse(PawstreamError, RuntimeError):
    """A configured port is taken and services.port_fallback is off."""


class PortPicker:
    """The configured port when it is free, else a free one (or an error when fallback is off)."""

    def __init__(self, fallback: bool) -> None:
        self.fallback = fallback
        self.taken: set[int] = set()
        self.moved: list[str] = []

    def pick(self, what: str, setting: str, host: str, port: int) -> int:
        # A port this stack already gave another service (worker-2's default is the monitor's)
        # is moved quietly; a port something else holds is reported, or refused without fallback.
        outside = bool(port) and port not in self.taken
        if outside and port_free(host, port):
            self.taken.add(port)
            return port
        if outside and not self.fallback:
            raise PortInUse(
                f"port {port} for the {what} is in use; free it, or choose another with "
                f"PAWSTREAM_{setting.upper().replace('.', '__')}=PORT "
                "(or allow a free port with PAWSTREAM_SERVICES__PORT_FALLBACK=true)"
            )
        chosen = free_port(host if host not in ("", "0.0.0.0") else "127.0.0.1")
        while chosen in self.taken:
            chosen = free_port()
        self.taken.add(chosen)
        if outside:
            self.moved.append(f"{what}: port {port} is in use, using {chosen}")
        return chosen
