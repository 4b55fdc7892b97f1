"""Reading request bodies with a hard size limit, counted while the bytes stream in.

Nothing reads an unbounded body into memory: a declared Content-Length over the limit is
refused before reading, and a streamed body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import json
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


async def read_json(request: Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
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


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """A JSON body validated into ``model``: 415 if not JSON, 413 past ``limit``, 422 if invalid."""
    if media_type(request) != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    data = await read_json(request, limit)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False), body=data) from exc


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody for a JSON body parsed by hand (so its size can be limited)."""
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}
