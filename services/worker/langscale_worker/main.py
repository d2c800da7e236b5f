"""``langscale worker``: load the pipelines, then run the worker process."""

from __future__ import annotations

import asyncio
import logging

from langscale import telemetry
from langscale.redis import WrongRedisKind
from langscale.settings import Settings
from langscale_worker.process import WorkerProcess
from langscale_worker.registry import PipelineLoadError, load_registry

logger = logging.getLogger(__name__)


def startup_warnings(settings: Settings) -> list[str]:
    """What a worker should warn about at start: settings that run, but probably not as
    meant."""
    warnings = []
    if settings.llm_provider == "openai" and not settings.openai_api_key:
        where = settings.openai_base_url or "OpenAI's API"
        warnings.append(
            f"LANGSCALE_LLM_PROVIDER=openai without LANGSCALE_OPENAI_API_KEY: calls to {where} "
            "go without a key (fine for a local vLLM or Ollama; OpenAI answers 401)"
        )
    return warnings


def build_worker(settings: Settings) -> WorkerProcess:
    """Load every pipeline (a bad import path raises PipelineLoadError) and build the
    process; models and pipelines are built before it takes any run."""
    return WorkerProcess(settings, load_registry(settings.pipelines))


def run(settings: Settings) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per LLM call otherwise
    telemetry.setup_tracing("langscale-worker")
    for warning in startup_warnings(settings):
        logger.warning(warning)
    try:
        worker = build_worker(settings)
    except PipelineLoadError as error:
        raise SystemExit(f"langscale worker: {error}") from None
    try:
        asyncio.run(worker.run())
    except WrongRedisKind as error:
        raise SystemExit(f"langscale worker: {error}") from None
    finally:
        # LangSmith (LANGSMITH_TRACING) posts runs from a background thread: send the last.
        from langchain_core.tracers.langchain import wait_for_all_tracers

        wait_for_all_tracers()
    if worker.failed:
        raise SystemExit("langscale worker: a helper task died (see the log)")
