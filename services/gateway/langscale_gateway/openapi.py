"""An honest OpenAPI document, and API docs that work offline.

- Every error answer is documented as what it is, ``{"error": {"type", "message", ...}}``
  (:class:`ErrorResponse`), with the statuses each route really answers (:func:`errors`),
  never FastAPI's ``{"detail": ...}``.
- With ``LANGSCALE_AUTH_ENABLED`` the document has the API key schemes (``Authorization:
  Bearer`` and ``X-API-Key``) on the routes that need a key, and their 401 (and 429 when a
  rate limit is set).
- The LangServe routes are documented per pipeline, as LangServe does: ``/chat/invoke``
  with the pipeline's own input and output JSON schemas (from the workers' catalog), instead
  of one ``/{pipeline}/invoke`` taking anything. The document is built per request from
  the catalog (cached as long as the catalog does not change).
- ``/docs`` (Swagger UI) and ``/redoc`` load their JavaScript and CSS from the gateway
  itself (the assets of the ``fastapi-offline`` package), never from a CDN.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from langscale.contract import PipelineDefinition
from langscale_gateway.deps import get_principal

ASSETS = "/docs/static"

_DESCRIPTIONS = {
    400: "invalid_json: the body is not JSON",
    401: "unauthorized: no API key, or an unknown one",
    403: "forbidden: this needs an admin API key",
    404: "not found: unknown or expired run (run_not_found), unknown pipeline "
    "(pipeline_not_found), unknown or expired thread of the caller's tenant (thread_not_found)",
    409: "conflict: the run already ended, is not failed, is still running, the "
    "Idempotency-Key names another request's run, or its thread is busy (thread_busy, "
    "multitask_strategy reject)",
    413: "payload_too_large: the body is over LANGSCALE_MAX_BODY_BYTES",
    415: "unsupported_media_type: the body was not sent as application/json",
    422: "invalid_request (the request does not match the API), invalid_input (the input "
    "does not match the pipeline's schema), or another named check; errors[] has JSON paths",
    429: "rate_limited (per API key), queue_full (admission) or thread_full (its thread "
    "holds LANGSCALE_THREAD_MAX_PENDING runs): retry after Retry-After",
    500: "the run failed: the error type and message are the run's",
    503: "redis_unavailable, or gateway_restarting (the runs go on, named in the error): "
    "retry after Retry-After",
    504: "run_timeout: the runs did not end within the wait; they go on (run_ids, pending)",
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Machine-readable error type, e.g. run_not_found.")
    message: str = Field(description="What went wrong and what to do, for people.")


class ErrorResponse(BaseModel):
    """Every error answer of every route."""

    error: ErrorDetail


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that may answer these error statuses."""
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


# Statuses any route with a JSON body may answer before it runs.
BODY_ERRORS = (400, 413, 415, 422)


class DocsBuilder:
    """The OpenAPI document of one app; the static part is built once."""

    def __init__(
        self, app: FastAPI, routers: list[APIRouter], auth: bool, rate_limited: bool
    ) -> None:
        self.app = app
        self.routers = routers  # whose routes' dependencies say which need an API key
        self.auth = auth
        self.rate_limited = rate_limited
        self._base: dict[str, Any] | None = None
        self._cached: tuple[str, dict[str, Any]] | None = None

    def base(self) -> dict[str, Any]:
        if self._base is None:
            app = self.app
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            self._secure(document)
            self._base = document
        return self._base

    def _secure(self, document: dict[str, Any]) -> None:
        if not self.auth:
            return
        components = document.setdefault("components", {})
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Authorization: Bearer <key>",
            },
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        routes = [route for router in self.routers for route in router.routes]
        for route in routes:
            if not isinstance(route, APIRoute) or not _needs_key(route):
                continue
            for method in route.methods or ():
                operation = document["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                operation["security"] = [{"bearer": []}, {"apiKey": []}]
                codes = (401, 429) if self.rate_limited else (401,)
                for code in codes:
                    operation["responses"].setdefault(
                        str(code),
                        {
                            "description": _DESCRIPTIONS[code],
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/ErrorResponse"}
                                }
                            },
                        },
                    )

    def document(self, pipelines: dict[str, PipelineDefinition]) -> dict[str, Any]:
        """The document with the LangServe routes of these pipelines."""
        key = json.dumps({n: d.model_dump() for n, d in sorted(pipelines.items())})
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        document = copy.deepcopy(self.base())
        if pipelines:
            generic = {p: v for p, v in document["paths"].items() if p.startswith("/{pipeline}/")}
            for path in generic:
                del document["paths"][path]
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in sorted(pipelines.items()):
                for path, item in generic.items():
                    document["paths"][path.replace("{pipeline}", name)] = _for_pipeline(
                        item, name, definition, schemas
                    )
        self._cached = (key, document)
        return document


def _needs_key(route: APIRoute) -> bool:
    return any(d.call is get_principal for d in route.dependant.dependencies)


def _hoist(schema: dict[str, Any], prefix: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """A pipeline's JSON schema with its ``$defs`` moved to the document's components
    (``#/$defs/X`` would point at the document's root in OpenAPI)."""
    schema = copy.deepcopy(schema)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[f"{prefix}{name}"] = _rewrite(definition, prefix)
    return _rewrite(schema, prefix)


def _rewrite(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                f"#/components/schemas/{prefix}{value.removeprefix('#/$defs/')}"
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _rewrite(value, prefix)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite(item, prefix) for item in node]
    return node


def _for_pipeline(
    item: dict[str, Any], name: str, definition: PipelineDefinition, schemas: dict[str, Any]
) -> dict[str, Any]:
    """One LangServe path of one pipeline: its input and output schemas filled in."""
    item = copy.deepcopy(item)
    prefix = "".join(part.capitalize() for part in name.replace("-", "_").split("_")) + "_"
    input_schema = _hoist(definition.input_schema, prefix, schemas)
    output_schema = _hoist(definition.output_schema, prefix, schemas)
    for method, operation in item.items():
        if not isinstance(operation, dict):
            continue
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p.get("name") != "pipeline"
        ]
        operation["operationId"] = f"{operation.get('operationId', method)}_{name}"
        operation["tags"] = [f"pipeline {name}"]
        if definition.description:
            operation["description"] = definition.description
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            body["schema"] = _body_schema(body["schema"], input_schema, schemas)
        ok = operation.get("responses", {}).get("200", {}).get("content", {})
        if "application/json" in ok and "invoke" in operation["operationId"]:
            ok["application/json"]["schema"] = {
                "type": "object",
                "properties": {"output": output_schema, "metadata": {"type": "object"}},
                "required": ["output", "metadata"],
            }
        elif "application/json" in ok and "batch" in operation["operationId"]:
            ok["application/json"]["schema"] = {
                "type": "object",
                "properties": {
                    "output": {"type": "array", "items": output_schema},
                    "metadata": {"type": "object"},
                },
                "required": ["output", "metadata"],
            }
    return item


def _body_schema(
    schema: dict[str, Any], input_schema: dict[str, Any], schemas: dict[str, Any]
) -> dict[str, Any]:
    """The request model's schema with ``input`` (or ``inputs[]``) the pipeline's."""
    reference = schema.get("$ref", "")
    model = copy.deepcopy(schemas.get(reference.removeprefix("#/components/schemas/"), schema))
    properties = model.get("properties", {})
    if "input" in properties:
        properties["input"] = input_schema
    if "inputs" in properties:
        properties["inputs"] = {**properties["inputs"], "items": input_schema}
    return model


def install(app: FastAPI, builder: DocsBuilder) -> None:
    """``/openapi.json``, ``/docs`` and ``/redoc``, with their assets served here."""
    static = resources.files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-static")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        service = getattr(request.app.state, "service", None)
        pipelines: dict[str, PipelineDefinition] = {}
        if service is not None:
            try:
                known = await service.catalog.all()
                pipelines = {name: p.definition for name, p in known.items()}
            except Exception:  # no catalog (Redis down): the generic routes are documented
                pipelines = {}
        return JSONResponse(builder.document(pipelines))

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
