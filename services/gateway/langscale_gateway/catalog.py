"""The gateway's view of the pipelines workers published: cached, with input validators."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from jsonschema import validators
from jsonschema.protocols import Validator

from langscale.contract import PipelineDefinition
from langscale.lifecycle import Catalog, RunStore
from langscale_gateway.errors import ApiError

logger = logging.getLogger(__name__)

# How often a gateway looks for forgotten pipelines' runs to fail, seconds.
SWEEP_SECONDS = 5.0


@dataclass(frozen=True)
class KnownPipeline:
    definition: PipelineDefinition
    validator: Validator

    def check_input(self, value: Any, path_prefix: str = "$.input") -> None:
        """Raise 422 listing every schema violation with its JSON path."""
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            items = [{"path": path_prefix + e.json_path[1:], "message": e.message} for e in errors]
            raise ApiError(
                422,
                "invalid_input",
                f"input does not match the input schema of pipeline {self.definition.name!r}",
                errors=items,
            )


class PipelineCatalog:
    """The pipelines workers serve (their heartbeats, in Redis), read at most every ``ttl``
    seconds."""

    def __init__(self, store: RunStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._pipelines: dict[str, KnownPipeline] = {}
        self.latest = Catalog({}, {}, 0)
        self._loaded_at = float("-inf")
        self._swept_at = float("-inf")
        self._loading: asyncio.Task[None] | None = None

    async def all(self) -> dict[str, KnownPipeline]:
        if time.monotonic() - self._loaded_at > self.ttl:
            # One read for all the requests that find the cache stale at once.
            if self._loading is None or self._loading.done():
                self._loading = asyncio.create_task(self._load())
            await asyncio.shield(self._loading)
        return self._pipelines

    async def _load(self) -> None:
        self.latest = await self.store.catalog()
        if time.monotonic() - self._swept_at > SWEEP_SECONDS:
            # Runs of pipelines the registry forgot fail now (pipeline_unavailable):
            # they waited queued for LANGSCALE_PIPELINE_RETENTION, as documented.
            self._swept_at = time.monotonic()
            ended = await self.store.fail_forgotten()
            if ended:
                logger.warning("runs of forgotten pipelines failed", extra={"runs": ended})
        self._pipelines = {
            name: self._known(definition) for name, definition in self.latest.definitions.items()
        }
        self._loaded_at = time.monotonic()

    def _known(self, definition: PipelineDefinition) -> KnownPipeline:
        cached = self._pipelines.get(definition.name)
        if cached and cached.definition == definition:
            return cached
        cls = validators.validator_for(definition.input_schema)
        return KnownPipeline(definition, cls(definition.input_schema))

    async def get(self, name: str) -> KnownPipeline:
        pipelines = await self.all()
        if name not in pipelines:
            raise ApiError(
                404,
                "pipeline_not_found",
                f"no pipeline named {name!r}",
                available=sorted(pipelines),
            )
        return pipelines[name]
