"""Submitting runs and waiting for them: what the runs API and LangServe routes share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langscale.contract import (
    JobSpec,
    RunRecord,
    StreamMode,
    is_valid_run_id,
    new_run_id,
)
from langscale.runs import RunStore
from langscale.settings import Settings
from langscale_gateway.catalog import PipelineCatalog
from langscale_gateway.errors import ApiError
from langscale_gateway.waiter import RunWaiter


@dataclass
class RunService:
    settings: Settings
    runs: RunStore
    catalog: PipelineCatalog
    waiter: RunWaiter

    async def submit(
        self,
        pipeline: str,
        inputs: Sequence[Any],
        configs: Sequence[dict[str, Any]],
        metadata: dict[str, Any] | None = None,
        input_paths: Sequence[str] | None = None,
        stream: StreamMode = StreamMode.OFF,
    ) -> list[str]:
        """Validate every input against the pipeline's schema, then enqueue all or none."""
        known = await self.catalog.get(pipeline)
        paths = input_paths or ["$.input"] * len(inputs)
        for value, path in zip(inputs, paths, strict=True):
            known.check_input(value, path)
        specs = [
            JobSpec(
                run_id=new_run_id(), pipeline=pipeline, input=value, config=config, stream=stream
            )
            for value, config in zip(inputs, configs, strict=True)
        ]
        await self.runs.enqueue(specs, metadata)
        return [spec.run_id for spec in specs]

    async def get(self, run_id: str) -> RunRecord:
        if not is_valid_run_id(run_id):
            raise ApiError(
                422, "invalid_run_id", "a run id is a UUID, e.g. as returned by POST /v1/runs"
            )
        record = await self.runs.get(run_id)
        if record is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        return record

    async def cancel(self, run_id: str, reason: str = "cancelled by the client") -> RunRecord:
        """Cancel a queued or running run; 409 if it had already ended."""
        await self.get(run_id)  # 422 / 404 first
        before = await self.runs.cancel(run_id, reason)
        if before is None:
            raise ApiError(404, "run_not_found", f"no run {run_id} (unknown or expired)")
        if before.is_final:
            raise ApiError(
                409,
                "run_already_finished",
                f"run {run_id} already ended: {before.value}",
                state=before.value,
            )
        return await self.get(run_id)

    async def cancel_quietly(self, run_ids: Sequence[str], reason: str) -> None:
        """Cancel runs whose client went away (those that already ended are left as is)."""
        for run_id in run_ids:
            await self.runs.cancel(run_id, reason)

    def leaves_cancel(self, on_disconnect: str | None) -> bool:
        policy = on_disconnect or self.settings.disconnect_policy
        if policy not in ("cancel", "continue"):
            raise ApiError(422, "invalid_request", "on_disconnect must be cancel or continue")
        return policy == "cancel"

    def invoke_timeout(self, requested: float | None) -> float:
        if requested is None:
            return self.settings.invoke_timeout
        if not 0 < requested <= self.settings.max_invoke_timeout:
            raise ApiError(
                422,
                "invalid_timeout",
                f"timeout must be > 0 and <= {self.settings.max_invoke_timeout:g} seconds",
            )
        return requested

    async def wait(self, run_ids: Sequence[str], timeout: float) -> list[RunRecord]:
        records = await self.waiter.wait(run_ids, timeout)
        missing = [run_id for run_id, r in zip(run_ids, records, strict=True) if r is None]
        if missing:  # expired between enqueue and now: only with a tiny result TTL
            raise ApiError(404, "run_not_found", f"run {missing[0]} expired before it ended")
        return [r for r in records if r is not None]
