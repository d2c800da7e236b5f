"""The gateway's view of the pipelines workers published: cached, with input validators."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jsonschema import validators
from jsonschema.protocols import Validator

from langscale.contract import PipelineDefinition
from langscale.lifecycle import Catalog, RunStore
from langscale_gateway.errors import ApiError


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

    async def all(self) -> dict[str, KnownPipeline]:
        if time.monotonic() - self._loaded_at > self.ttl:
            self.latest = await self.store.catalog()
            self._pipelines = {
                name: self._known(definition)
                for name, definition in self.latest.definitions.items()
            }
            self._loaded_at = time.monotonic()
        return self._pipelines

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
