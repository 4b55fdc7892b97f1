"""Image references (file://, http://, https://): validation and bounded fetching.

Validation is synchronous and cheap, so the API and producers reject a bad reference before it
is published; the worker validates again before it reads anything (events may come from any
client). Every refusal is an EventError with reason ``reference`` or ``too_large``.

http(s) hosts are checked twice: here on what the URL says literally (no DNS), and where they are
resolved, at connect time, by the pinned network backend of :mod:`pawstream.netpolicy` (every
resolved address must be public or in ``refs.allowed_networks``; the socket goes to a checked
address). Redirects are followed by hand, so every hop goes through both.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import ssl
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import httpcore
import httpx

from pawstream.netpolicy import (
    AddressPolicy,
    PinnedNetworkBackend,
    PinnedTransport,
    Resolver,
    SystemResolver,
    is_legacy_numeric_host,
    is_loopback_name,
    literal_address,
)
from pawstream.schemas import DeadLetterReason, EventError
from pawstream.settings import ReferenceSettings

REF = DeadLetterReason.REFERENCE
MAX_REFERENCE_CHARS = 8192
MAX_HOST_CHARS = 253  # DNS: a longer name cannot resolve
MAX_LABEL_CHARS = 63
# One answer for a file outside the roots and a missing one, so the API is no file-existence oracle.
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+")  # letters, digits, hyphen (and '_' some DNS names use)
LOOPBACK_ADDRESSES = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
FILE_REFUSED = "file not found or not allowed (refs.allowed_roots)"


@dataclass(frozen=True)
class FileRef:
    path: Path  # resolved, inside an allowed root


@dataclass(frozen=True)
class HttpRef:
    url: str


def _refuse(message: str, reason: DeadLetterReason = REF) -> EventError:
    return EventError(reason, message)


def _shown(text: str, limit: int = 200) -> str:
    """User text quoted for a message, cut so a refusal never echoes kilobytes back."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def file_uri(path: Path) -> str:
    return Path(path).resolve().as_uri()


class ReferencePolicy:
    """What references are allowed, from ReferenceSettings.

    :meth:`check` is synchronous and does no DNS: it parses, refuses what the reference names
    literally (scheme, host syntax, literal or loopback-named addresses, files outside the roots),
    and raises only EventError, whatever the string. Hostnames are checked again where they are
    resolved, at connect time (see :mod:`pawstream.netpolicy`).
    """

    def __init__(self, refs: ReferenceSettings) -> None:
        self.refs = refs
        self.addresses = AddressPolicy(refs.allowed_networks)
        self.roots = [Path(r).resolve() for r in refs.allowed_roots]
        # A root given through a symlink is also matched as written, for the lexical pre-check.
        self.lexical_roots = {Path(os.path.normpath(os.path.abspath(r))) for r in refs.allowed_roots}
        self.lexical_roots.update(self.roots)

    def check(self, uri: str) -> FileRef | HttpRef:
        if len(uri) > MAX_REFERENCE_CHARS:
            raise _refuse(f"reference is {len(uri)} characters, over {MAX_REFERENCE_CHARS}")
        try:
            parts = urlsplit(uri)
        except ValueError as exc:
            raise _refuse(f"malformed reference {_shown(uri)}: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in self.refs.allowed_schemes:
            allowed = ", ".join(self.refs.allowed_schemes) or "none"
            raise _refuse(f"reference scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
        if scheme == "file":
            return FileRef(self._check_file(parts))
        return HttpRef(self.check_url(uri))

    def check_url(self, url: str) -> str:
        """Refuse an http(s) URL on what it says literally; every redirect hop comes through here."""
        try:
            # httpx's own parser: the host checked is the host httpx will connect to.
            parsed = httpx.URL(url)
            host = parsed.host.lower()  # decodes IDNA: IDNAError for an invalid A-label
            raw_host = parsed.raw_host.decode("ascii").lower()
            split_host = urlsplit(url).hostname or ""
            port = parsed.port
        except (httpx.InvalidURL, ValueError) as exc:  # IDNAError and UnicodeError are ValueErrors
            raise _refuse(f"malformed URL {_shown(url)}: {exc}") from exc
        scheme = parsed.scheme.lower()
        if scheme not in ("http", "https") or scheme not in self.refs.allowed_schemes:
            raise _refuse(f"URL scheme of {_shown(url)} is not an allowed http(s) scheme")
        if not host:
            raise _refuse(f"URL {_shown(url)} has no host")
        if port is not None and not 0 < port <= 65535:
            raise _refuse(f"URL {_shown(url)} has an invalid port {port}")
        self._check_host_text(url, host, raw_host, split_host)
        literal = literal_address(host)
        if literal is not None:
            self.addresses.check(host, [literal])
        elif is_loopback_name(host):
            self.addresses.check(host, LOOPBACK_ADDRESSES)
        allowed = [h.lower() for h in self.refs.http_allowed_hosts]
        if allowed and host not in allowed:
            raise _refuse(f"host {host!r} is not in the allowed hosts")
        return url

    def _check_host_text(self, url: str, host: str, raw_host: str, split_host: str) -> None:
        if split_host.lower() != host:
            # Two parsers disagree on the host (backslashes, odd escapes): refuse the ambiguity.
            raise _refuse(f"URL {_shown(url)} has an ambiguous host")
        if not host.isascii() and (
            unicodedata.normalize("NFKC", host) != host or unicodedata.normalize("NFC", host) != host
        ):
            raise _refuse(f"host {_shown(host)} changes under Unicode normalisation")
        if literal_address(host) is None:
            if len(raw_host) > MAX_HOST_CHARS or any(
                len(label) > MAX_LABEL_CHARS for label in raw_host.split(".")
            ):
                raise _refuse(f"host {_shown(host)} is too long for a DNS name")
            if not _HOST_CHARS.fullmatch(raw_host):
                raise _refuse(f"host {_shown(host)} has characters a DNS name cannot have")
            if is_legacy_numeric_host(host):
                raise _refuse(f"host {_shown(host)} is a non-canonical IPv4 address")

    def _check_file(self, parts: SplitResult) -> Path:
        if parts.netloc not in ("", "localhost"):
            raise _refuse(f"file:// references must be local, got host {_shown(parts.netloc)}")
        if not self.roots:
            raise _refuse(
                "file:// references are disabled: no allowed roots are configured (refs.allowed_roots)"
            )
        raw_path = unquote(parts.path)
        # Everything up to the resolve is decided on the text alone, the same for any filesystem.
        if "\x00" in raw_path:
            raise _refuse("file:// reference contains a NUL byte")
        if not raw_path.startswith("/"):
            raise _refuse("file:// reference must be an absolute path")
        if ".." in Path(raw_path).parts:
            raise _refuse("file:// reference must not contain '..'")
        lexical = Path(os.path.normpath(raw_path))
        if not any(lexical.is_relative_to(root) for root in self.lexical_roots):
            raise _refuse(FILE_REFUSED)
        try:
            resolved = Path(raw_path).resolve(strict=True)  # follows symlinks: the real target is checked
        except (OSError, RuntimeError, ValueError) as exc:  # missing, loop, undecodable name
            raise _refuse(FILE_REFUSED) from exc
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise _refuse(FILE_REFUSED)
        return resolved


class ReferenceFetcher:
    """Reads referenced images within the size and time limits. Use as an async context manager."""

    def __init__(
        self,
        refs: ReferenceSettings,
        *,
        resolver: Resolver | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``resolver``, ``network`` (what opens sockets) and ``ssl_context`` (trusted CAs) default to
        the system's; tests stub them."""
        self.refs = refs
        self.policy = ReferencePolicy(refs)
        backend = PinnedNetworkBackend(
            self.policy.addresses, resolver or SystemResolver(), network or httpcore.AnyIOBackend()
        )
        self._client = httpx.AsyncClient(
            transport=PinnedTransport(backend, ssl_context=ssl_context),
            follow_redirects=False,  # redirects are followed by hand, each target checked
            timeout=httpx.Timeout(refs.http_timeout_s),
            headers={"User-Agent": "pawstream-worker"},
            trust_env=False,  # no proxy from the environment: it would connect instead of the pinned backend
        )

    async def __aenter__(self) -> ReferenceFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, uri: str) -> bytes:
        ref = self.policy.check(uri)
        if isinstance(ref, FileRef):
            return await asyncio.to_thread(self._read_file, ref.path)
        try:
            async with asyncio.timeout(self.refs.http_timeout_s):
                return await self._fetch_http(ref.url)
        except TimeoutError as exc:
            raise _refuse(f"fetching {uri} took longer than {self.refs.http_timeout_s}s") from exc

    def _read_file(self, path: Path) -> bytes:
        limit = self.refs.file_max_bytes
        try:
            # O_NOFOLLOW: the path was resolved already; a symlink swapped in since is refused.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise _refuse(f"cannot open {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(f"{path} is not a regular file")
            if st.st_size > limit:
                raise _refuse(
                    f"{path} is {st.st_size} bytes, over the {limit} limit", DeadLetterReason.TOO_LARGE
                )
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise _refuse(f"{path} is over the {limit} byte limit", DeadLetterReason.TOO_LARGE)
        return data

    async def _fetch_http(self, url: str) -> bytes:
        limit = self.refs.http_max_bytes
        for _ in range(self.refs.http_max_redirects + 1):
            self.policy.check_url(url)  # the address itself is checked at connect time, by the backend
            try:
                async with self._client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise _refuse(f"{url} redirected without a Location header")
                        try:
                            url = urljoin(url, location)
                        except ValueError as exc:
                            raise _refuse(f"{url} redirected to a malformed location") from exc
                        continue
                    if resp.status_code != 200:
                        raise _refuse(f"GET {url} answered HTTP {resp.status_code}")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise _refuse(
                            f"{url} is {declared} bytes, over the {limit} limit", DeadLetterReason.TOO_LARGE
                        )
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise _refuse(f"{url} sent more than {limit} bytes", DeadLetterReason.TOO_LARGE)
                    return bytes(body)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise _refuse(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        raise _refuse(f"{url}: more than {self.refs.http_max_redirects} redirects")
