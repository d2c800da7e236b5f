"""One error shape everywhere: ``{"error": {"type", "message", ...}}``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from langscale.redis import UNAVAILABLE

logger = logging.getLogger(__name__)

# Seconds a client should wait before trying again after a 503 (Redis unreachable).
REDIS_RETRY_AFTER = 5


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        type: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.type = type
        self.message = message
        self.headers = headers
        self.details = details


def error_response(
    status_code: int,
    type: str,
    message: str,
    headers: dict[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    body = {"error": {"type": type, "message": message, **details}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def api_error_response(exc: ApiError) -> JSONResponse:
    return error_response(exc.status_code, exc.type, exc.message, exc.headers, **exc.details)


def json_path(location: tuple[int | str, ...] | list[int | str]) -> str:
    """``("body", "input", 0, "x")`` -> ``$.input[0].x`` (the request body is ``$``)."""
    path = "$"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_STATUS_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    400: "bad_request",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e["loc"][:1] == ("body",) for e in errors) and not is_json(request):
            # FastAPI reads a body sent without a JSON content type as bytes, and would say
            # "Input should be a valid dictionary": name the real fix instead.
            return error_response(
                415,
                "unsupported_media_type",
                "send the body as JSON with the header 'Content-Type: application/json' (got "
                f"{request.headers.get('content-type') or 'no Content-Type'})",
            )
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            message = f"request body is not valid JSON: {detail.get('ctx', {}).get('error', '')}"
            return error_response(400, "invalid_json", message.strip(": "))
        items = [
            {
                "path": json_path(list(e["loc"])[1:])
                if e["loc"][:1] == ("body",)
                else ".".join(str(p) for p in e["loc"]),
                "message": e["msg"],
            }
            for e in errors
        ]
        return error_response(
            422, "invalid_request", "the request does not match the API", errors=items
        )

    @app.exception_handler(RedisError)
    async def _redis_error(request: Request, exc: RedisError) -> JSONResponse:
        return _unavailable(request, exc)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        return _unavailable(request, exc)

    @app.exception_handler(ExceptionGroup)
    async def _group(request: Request, exc: ExceptionGroup) -> JSONResponse:
        # Task groups (waiting for a run while watching the client) wrap what they raise.
        leaf = first_leaf(exc)
        if isinstance(leaf, ApiError):
            return api_error_response(leaf)
        if isinstance(leaf, RedisError | OSError):
            return _unavailable(request, leaf)
        return _internal(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(
            exc.status_code,
            _STATUS_TYPES.get(exc.status_code, "http_error"),
            message,
            dict(exc.headers) if exc.headers else None,
        )


def is_json(request: Request) -> bool:
    """Whether a request says its body is JSON (application/json or any +json type)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def first_leaf(group: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(group, BaseExceptionGroup) and group.exceptions:
        group = group.exceptions[0]
    return group


def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, UNAVAILABLE) and isinstance(exc, RedisError):
        return _internal(request, exc)
    # Not the client's fault: say when to come back (a run, if one was queued, goes on).
    logger.warning("Redis unavailable during %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        "redis_unavailable",
        "the queue is unreachable right now; retry shortly",
        {"Retry-After": str(REDIS_RETRY_AFTER)},
        retry_after=REDIS_RETRY_AFTER,
    )


def _internal(request: Request, exc: BaseException) -> JSONResponse:
    logger.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the gateway failed to answer this request")
