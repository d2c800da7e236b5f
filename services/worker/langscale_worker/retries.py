"""Which failures are worth another attempt, and when."""

from __future__ import annotations

import random
from typing import Any

import httpx

from langscale.retry_after import parse_retry_after

# Provider answers that say "not now" rather than "never".
RETRIABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class RetriableError(Exception):
    """Raise from a pipeline to have the run retried with backoff.

    ``retry_after`` (seconds) overrides the backoff when given."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def retry_after_seconds(exc: BaseException) -> float | None:
    """What the error's response asks to wait (retry-after-ms, Retry-After), if anything."""
    if isinstance(exc, RetriableError):
        return exc.retry_after
    headers: Any = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        seconds = parse_retry_after(str(ms))
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    return parse_retry_after(str(value))


def _is_transport_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    # openai's APIConnectionError / APITimeoutError, without importing openai here.
    return isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError) or bool(
        names & {"APIConnectionError", "APITimeoutError"}
    )


def classify(exc: BaseException) -> tuple[bool, float | None]:
    """(retriable?, the provider's Retry-After in seconds) for an exception or its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RetriableError) or _is_transport_error(current):
            return True, retry_after_seconds(current)
        status = _status(current)
        if status is not None:
            return status in RETRIABLE_STATUS, retry_after_seconds(current)
        current = current.__cause__ or current.__context__
    return False, None


def backoff(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter (50-100% of the step); a Retry-After wins if later.
    Never more than ``cap``: a provider asking for an hour must not outlive the run."""
    step = min(cap, base * 2 ** max(0, attempt - 1))
    delay = step * random.uniform(0.5, 1.0)
    return min(cap, max(delay, retry_after)) if retry_after is not None else delay
