from __future__ import annotations

import pytest

from langscale.contract import (
    FINAL_STATES,
    JobSpec,
    RunState,
    is_valid_run_id,
    new_run_id,
)


def test_final_states_are_exactly_the_ends_of_a_run() -> None:
    assert {s for s in RunState if s.is_final} == FINAL_STATES
    assert not RunState.QUEUED.is_final and not RunState.RUNNING.is_final


def test_new_run_ids_are_valid_and_distinct() -> None:
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(is_valid_run_id(i) for i in ids)


@pytest.mark.parametrize(
    "value",
    ["", "abc", "6B1C7A52-3C1E-4D1F-9A63-3F0F8D6F2F7E", "6b1c7a52-3c1e-1d1f-9a63-3f0f8d6f2f7e"],
)
def test_malformed_run_ids_are_rejected(value: str) -> None:
    assert not is_valid_run_id(value)


def test_job_spec_round_trips_through_json() -> None:
    spec = JobSpec(run_id=new_run_id(), pipeline="chat", input={"question": "x"})
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec
