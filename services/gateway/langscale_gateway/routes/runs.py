"""The async runs API: ``POST /v1/runs``, ``GET /v1/runs/{run_id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from langscale.contract import RunRecord, RunState
from langscale_gateway.deps import Service

router = APIRouter(prefix="/v1/runs", tags=["runs"])


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(description="Name of a published pipeline.")
    input: Any = Field(description="Input, validated against the pipeline's input schema.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="RunnableConfig keys passed to the pipeline: configurable, tags, "
        "metadata, run_name, max_concurrency, recursion_limit.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Stored with the run and returned as is."
    )


class RunAccepted(BaseModel):
    run_id: str
    state: RunState
    status_url: str


def status_url(request: Request, run_id: str) -> str:
    return str(request.url_for("get_run", run_id=run_id).path)


@router.post("", status_code=202, response_model=RunAccepted, summary="Queue a run")
async def create_run(body: RunRequest, request: Request, service: Service) -> JSONResponse:
    (run_id,) = await service.submit(body.pipeline, [body.input], [body.config], body.metadata)
    url = status_url(request, run_id)
    return JSONResponse(
        {"run_id": run_id, "state": RunState.QUEUED.value, "status_url": url},
        status_code=202,
        headers={"Location": url},
    )


@router.get("/{run_id}", response_model=RunRecord, summary="State, output or error of a run")
async def get_run(run_id: str, service: Service) -> JSONResponse:
    record = await service.get(run_id)
    return JSONResponse(record.model_dump(mode="json"))
