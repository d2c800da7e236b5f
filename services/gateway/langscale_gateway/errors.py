"""One error shape everywhere: ``{"error": {"type", "message", ...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException


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
        return error_response(exc.status_code, exc.type, exc.message, exc.headers, **exc.details)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
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
    async def _redis_down(_: Request, exc: RedisError) -> JSONResponse:
        # Not the client's fault and not lost: nothing was queued. Say when to come back.
        return error_response(
            503,
            "redis_unavailable",
            "the queue is unreachable right now; nothing was queued, retry shortly",
            {"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(
            exc.status_code,
            _STATUS_TYPES.get(exc.status_code, "http_error"),
            message,
            dict(exc.headers) if exc.headers else None,
        )
