"""Pipeline registry: names bound to Runnables found by import path, loaded once at start."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable

from langscale.contract import PipelineDefinition


class PipelineLoadError(Exception):
    """A pipeline's import path does not lead to a Runnable (stops the worker)."""


@dataclass(frozen=True)
class Pipeline:
    name: str
    target: str
    runnable: Runnable
    description: str = ""

    def definition(self) -> PipelineDefinition:
        return PipelineDefinition(
            name=self.name,
            description=self.description,
            input_schema=self.runnable.get_input_jsonschema(),
            output_schema=self.runnable.get_output_jsonschema(),
            needs_thread=any(spec.id == "session_id" for spec in self.runnable.config_specs),
        )


def resolve(target: str) -> Any:
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise PipelineLoadError(f"{target!r} is not of the form module:attr")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise PipelineLoadError(f"cannot import module {module_name!r}: {error}") from error
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise PipelineLoadError(f"module {module_name!r} has no {attr_path!r}") from None
    return obj


def load_pipeline(name: str, target: str) -> Pipeline:
    """A Runnable as is, or a zero-argument factory called once to build one."""
    obj = resolve(target)
    description = ""
    if not isinstance(obj, Runnable) and callable(obj):
        # A factory's docstring is the pipeline's description; a Runnable's is its class's.
        description = next(iter((obj.__doc__ or "").strip().splitlines()), "")
        try:
            obj = obj()
        except Exception as error:
            raise PipelineLoadError(f"factory {target!r} failed: {error!r}") from error
    if not isinstance(obj, Runnable):
        raise PipelineLoadError(
            f"{target!r} is a {type(obj).__name__}, not a LangChain Runnable or a factory of one"
        )
    return Pipeline(name=name, target=target, runnable=obj, description=description)


def load_registry(targets: dict[str, str]) -> dict[str, Pipeline]:
    loaded: dict[str, Pipeline] = {}
    for name, target in targets.items():
        try:
            loaded[name] = load_pipeline(name, target)
        except PipelineLoadError as error:
            raise PipelineLoadError(f"pipeline {name!r}: {error}") from error
    return loaded
