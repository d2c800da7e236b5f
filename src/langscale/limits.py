"""Parsing of the outgoing-call settings (rate limits, tenant weights, name lists).

Kept apart from :mod:`langscale.settings` so that file stays a list of knobs; the
validators there call these.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


class RateLimit(BaseModel):
    """A provider/model budget per ``LANGSCALE_RATE_LIMIT_WINDOW`` (60 s: rpm and tpm).

    0 means that dimension is not limited.
    """

    rpm: int = Field(0, ge=0, description="Requests per window.")
    tpm: int = Field(0, ge=0, description="Tokens per window.")


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected {what}, got {item!r}")
        pairs.append((name.strip(), value.strip()))
    return pairs


def parse_rate_limits(value: object) -> object:
    """``provider/model=rpm:tpm,...`` (``rpm`` alone, or ``:tpm`` alone) or a JSON object
    ``{"provider/model": {"rpm": n, "tpm": n}}``. ``*`` and ``provider/*`` match any model."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    limits: dict[str, Any] = {}
    for name, spec in _pairs(text, "provider/model=rpm:tpm"):
        rpm, _, tpm = spec.partition(":")
        try:
            limits[name] = {"rpm": int(rpm or 0), "tpm": int(tpm or 0)}
        except ValueError:
            raise ValueError(f"expected rpm:tpm as integers for {name!r}, got {spec!r}") from None
    return limits


def parse_weights(value: object) -> object:
    """``tenant=weight,...`` or a JSON object."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    weights = {name: float(weight) for name, weight in _pairs(text, "tenant=weight")}
    if any(weight <= 0 for weight in weights.values()):
        raise ValueError("tenant weights must be > 0")
    return weights


def parse_names(value: object) -> object:
    """``a,b,c`` or a JSON list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)
    return [part.strip() for part in text.split(",") if part.strip()]


def find_limit(limits: dict[str, RateLimit], key: str) -> RateLimit | None:
    """The limit for ``provider/model``: exact, else ``provider/*``, else ``*``.

    A wildcard gives each model its own budget of that size, as providers count per model.
    """
    provider = key.partition("/")[0]
    for pattern in (key, f"{provider}/*", "*"):
        if pattern in limits:
            return limits[pattern]
    return None
