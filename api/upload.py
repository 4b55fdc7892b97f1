"""Reading request bodies with a hard size limit, counted while the bytes stream in.

Nothing reads an unbounded body into memory: a declared Content-Length over the limit is
refused before reading, and a streamed body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from api.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# Multipart framing around the image: boundaries, part headers, a filename.
MULTIPART_OVERHEAD = 64 * 1024


def too_large(limit: int, what: str = "request body") -> ApiError:
    return ApiError(413, "payload_too_large", f"{what} is larger than the {limit} byte limit")


def image_too_large(limit: int) -> ApiError:
    return too_large(limit, "image (inline upload)")


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    check_declared_length(request, limit)
    body = bytearray()
    async for chunk in limited_stream(request, limit):
        body += chunk
    return bytes(body)


# A JSON string (skipped whole, so brackets inside it do not count) or one bracket.
_JSON_NESTING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


def json_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """Whether ``raw`` nests arrays/objects deeper than ``max_depth``, found without parsing it.

    Checked before ``json.loads``: the C parser recurses once per level and raises RecursionError
    (a 500) on a few KB of ``[``, and every later step (validation, error rendering) recurses too.
    A regex scan is linear and cannot recurse; an unterminated string at worst over-counts, and
    such a body is invalid JSON anyway.
    """
    depth = 0
    for match in _JSON_NESTING.finditer(raw):
        token = match.group()
        if len(token) != 1:
            continue  # a string
        if token[0] in _OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def too_deep(max_depth: int) -> ApiError:
    return ApiError(400, "json_too_deep", f"request body nests JSON deeper than {max_depth} levels")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, limit: int, max_depth: int) -> Any:
    """The parsed JSON body: 413 past ``limit`` bytes, 400 if malformed or nested past ``max_depth``."""
    raw = await read_body(request, limit)
    try:
        # UTF-8 only (RFC 8259): json.loads(bytes) would also take UTF-16/32, whose brackets the
        # byte scan below does not see.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"request body is not UTF-8: {exc}") from exc
    if json_depth_exceeds(raw, max_depth):
        raise too_deep(max_depth)
    try:
        # parse_constant: NaN and Infinity are Python's extension, not JSON.
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:  # only if max_depth is set beyond what the parser can take
        raise too_deep(max_depth) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        # ValueError covers JSONDecodeError and also integers past Python's digit limit.
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc


async def read_upload(request: Request, field: str, file_limit: int) -> bytes:
    """The bytes of multipart part ``field``; 413 past ``file_limit``."""
    limit = file_limit + MULTIPART_OVERHEAD
    try:
        check_declared_length(request, limit)
        parser = MultiPartParser(request.headers, limited_stream(request, limit), max_files=1, max_fields=16)
        form = await parser.parse()
    except ApiError as exc:
        if exc.status != 413:
            raise
        # Report the limit the client controls (the image's), not the framing allowance.
        raise image_too_large(file_limit) from exc
    except MultiPartException as exc:
        raise ApiError(400, "invalid_multipart", f"malformed multipart body: {exc.message}") from exc
    try:
        part = form.get(field)
        if part is None:
            raise ApiError(422, "missing_file", f"multipart body has no {field!r} part")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "missing_file", f"{field!r} must be a file part (with a filename)")
        data = await part.read(file_limit + 1)
        if len(data) > file_limit:
            raise image_too_large(file_limit)
        return data
    finally:
        await form.close()


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_model(request: Request, model: type[M], limit: int, max_depth: int) -> M:
    """A JSON body validated into ``model``: 415 if not JSON, 413 past ``limit``, 400 if malformed
    or nested deeper than ``max_depth``, 422 if invalid."""
    if media_type(request) != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = await read_json(request, limit, max_depth)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False), body=data) from exc


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody for a JSON body parsed by hand (so its size can be limited)."""
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}
