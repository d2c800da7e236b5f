"""Reading an HTTP ``Retry-After`` value: one rule for the worker (provider answers) and the
client (the gateway's 429 and 503)."""

from __future__ import annotations

import email.utils
import math
import time


def parse_retry_after(value: str) -> float | None:
    """Seconds from a Retry-After value (delta seconds or an HTTP date); None when it
    cannot be read, as if none had been sent."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
