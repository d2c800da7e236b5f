from __future__ import annotations

import json

import pytest

from langscale.contract import (
    FINAL_STATES,
    JobSpec,
    RunState,
    is_valid_run_id,
    storable_problems,
)
from langscale.keys import new_run_id


def test_final_states_are_exactly_the_ends_of_a_run() -> None:
    assert {s for s in RunState if s.is_final} == FINAL_STATES
    assert not RunState.QUEUED.is_final and not RunState.RUNNING.is_final


def test_new_run_ids_are_valid_and_distinct() -> None:
    ids = {new_run_id(0) for _ in range(1000)}
    assert len(ids) == 1000 and all(is_valid_run_id(i) for i in ids)


@pytest.mark.parametrize("value", ["", "abc", "6B1C7A52-3C1E-4D1F-9A63-3F0F8D6F2F7E", "6b1c7a52"])
def test_malformed_run_ids_are_rejected(value: str) -> None:
    assert not is_valid_run_id(value)


def test_any_canonical_uuid_is_a_run_id() -> None:
    assert is_valid_run_id("6b1c7a52-3c1e-1d1f-9a63-3f0f8d6f2f7e")  # version 1


def test_job_spec_round_trips_through_its_stored_form() -> None:
    spec = JobSpec(run_id=new_run_id(0), pipeline="chat", input={"question": "x"}, tenant="t")
    assert JobSpec.from_stored(spec.run_id, "chat", spec.stored()) == spec
    assert "run_id" not in json.loads(spec.stored())  # the run hash holds it already


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ('{"a": "\\ud800"}', "$.a", "lone surrogate"),
        ('{"a": {"\\udfff": 1}}', "$.a", "key is not valid UTF-8"),
        ('{"n": NaN}', "$.n", "not JSON"),
        ('{"n": [1, Infinity]}', "$.n[1]", "not JSON"),
        ('{"n": 1e400}', "$.n", "not JSON"),
        ("[" * 65 + "]" * 65, "$" + "[0]" * 64, "nested deeper than 64 levels"),
    ],
)
def test_values_a_run_cannot_store_are_named_with_their_path(
    text: str, path: str, message: str
) -> None:
    (problem,) = storable_problems(json.loads(text), "$", max_depth=64)
    assert problem["path"] == path and message in problem["message"]


def test_ordinary_json_is_storable() -> None:
    value = {"text": "héllo ✓ 𝄞", "n": [1, 2.5, -1e300, None, True], "deep": [[[["ok"]]]]}
    assert storable_problems(value) == []
