"""``langscale worker``: load the pipelines, then run the worker process."""

from __future__ import annotations

import asyncio
import logging

from langscale import telemetry
from langscale.settings import Settings
from langscale_worker.process import WorkerProcess
from langscale_worker.registry import PipelineLoadError, load_registry


def build_worker(settings: Settings) -> WorkerProcess:
    """Load every pipeline (a bad import path raises PipelineLoadError) and build the
    process; models and pipelines are built before it takes any run."""
    return WorkerProcess(settings, load_registry(settings.pipelines))


def run(settings: Settings) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per LLM call otherwise
    telemetry.setup_tracing("langscale-worker")
    try:
        worker = build_worker(settings)
    except PipelineLoadError as error:
        raise SystemExit(f"langscale worker: {error}") from None
    asyncio.run(worker.run())
