"""Image references (file://, http://, https://): validation and bounded fetching.

Validation is synchronous and cheap, so the API and producers reject a bad reference before it
is published; the worker validates again before it reads anything (events may come from any
client). Every refusal is an EventError with reason ``reference`` or ``too_large``.
"""

from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from pawstream.schemas import DeadLetterReason, EventError
from pawstream.settings import ReferenceSettings

REF = DeadLetterReason.REFERENCE


@dataclass(frozen=True)
class FileRef:
    path: Path  # resolved, inside an allowed root


@dataclass(frozen=True)
class HttpRef:
    url: str


def _refuse(message: str, reason: DeadLetterReason = REF) -> EventError:
    return EventError(reason, message)


def file_uri(path: Path) -> str:
    return Path(path).resolve().as_uri()


class ReferencePolicy:
    """What references are allowed, from ReferenceSettings."""

    def __init__(self, refs: ReferenceSettings) -> None:
        self.refs = refs
        self.roots = [Path(r).resolve() for r in refs.allowed_roots]

    def check(self, uri: str) -> FileRef | HttpRef:
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme not in self.refs.allowed_schemes:
            allowed = ", ".join(self.refs.allowed_schemes) or "none"
            raise _refuse(f"reference scheme {scheme or '(none)'!r} is not allowed (allowed: {allowed})")
        if scheme == "file":
            return FileRef(self._check_file(parts.netloc, unquote(parts.path)))
        self.check_host(uri)
        return HttpRef(uri)

    def check_host(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in self.refs.allowed_schemes or parts.scheme.lower() not in (
            "http",
            "https",
        ):
            raise _refuse(f"URL scheme of {url!r} is not an allowed http(s) scheme")
        host = (parts.hostname or "").lower()
        if not host:
            raise _refuse(f"URL {url!r} has no host")
        allowed = [h.lower() for h in self.refs.http_allowed_hosts]
        if allowed and host not in allowed:
            raise _refuse(f"host {host!r} is not in the allowed hosts")

    def _check_file(self, netloc: str, raw_path: str) -> Path:
        if netloc not in ("", "localhost"):
            raise _refuse(f"file:// references must be local, got host {netloc!r}")
        if not self.roots:
            raise _refuse(
                "file:// references are disabled: no allowed roots are configured (refs.allowed_roots)"
            )
        if not raw_path.startswith("/"):
            raise _refuse("file:// reference must be an absolute path")
        if ".." in Path(raw_path).parts:
            raise _refuse("file:// reference must not contain '..'")
        try:
            resolved = Path(raw_path).resolve(strict=True)  # follows symlinks: the real target is checked
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise _refuse(f"file not found: {raw_path}") from exc
        except (OSError, RuntimeError) as exc:
            raise _refuse(f"file reference cannot be resolved: {exc}") from exc
        if not any(resolved.is_relative_to(root) for root in self.roots):
            raise _refuse(f"file {raw_path} is outside the allowed roots")
        return resolved


class ReferenceFetcher:
    """Reads referenced images within the size and time limits. Use as an async context manager."""

    def __init__(self, refs: ReferenceSettings) -> None:
        self.refs = refs
        self.policy = ReferencePolicy(refs)
        self._client = httpx.AsyncClient(
            follow_redirects=False,  # redirects are followed by hand, each target checked
            timeout=httpx.Timeout(refs.http_timeout_s),
            headers={"User-Agent": "pawstream-worker"},
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
            self.policy.check_host(url)
            try:
                async with self._client.stream("GET", url) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise _refuse(f"{url} redirected without a Location header")
                        url = urljoin(url, location)
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
            except httpx.HTTPError as exc:
                raise _refuse(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        raise _refuse(f"{url}: more than {self.refs.http_max_redirects} redirects")
