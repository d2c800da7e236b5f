"""FastAPI dependencies: the per-process objects built in the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from langscale_gateway.auth import Principal
from langscale_gateway.service import RunService


async def get_service(request: Request) -> RunService:
    # async: FastAPI runs a sync dependency in a thread pool, a thread hop per request.
    return request.app.state.service


async def get_principal(request: Request) -> Principal:
    return await request.app.state.auth.authenticate(request)


Service = Annotated[RunService, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_principal)]
