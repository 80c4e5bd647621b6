"""Work unit states, statuses and errors."""

from __future__ import annotations

import pytest

from xmanager import xm

S = xm.WorkUnitState


def test_state_numbers_match_the_launcher_contract() -> None:
    assert {state.name: int(state) for state in S} == {
        "UNSPECIFIED": 0,
        "PENDING": 1,
        "STARTING": 2,
        "RUNNING": 3,
        "SUCCEEDED": 4,
        "FAILED": 5,
        "CANCELLING": 6,
        "CANCELLED": 7,
        "LOST": 8,
    }


# Expected (is_active, is_completed, is_failed, is_cancelled, is_final) per state.
PROPERTIES = {
    S.UNSPECIFIED: (False, False, False, False, False),
    S.PENDING: (True, False, False, False, False),
    S.STARTING: (True, False, False, False, False),
    S.RUNNING: (True, False, False, False, False),
    S.CANCELLING: (True, False, False, False, False),
    S.SUCCEEDED: (False, True, False, False, True),
    S.FAILED: (False, False, True, False, True),
    S.LOST: (False, False, True, False, True),
    S.CANCELLED: (False, False, False, True, True),
}


@pytest.mark.parametrize("state", list(S))
def test_status_properties(state: xm.WorkUnitState) -> None:
    status = xm.ExperimentUnitStatus(state, "msg")
    assert (
        status.is_active,
        status.is_completed,
        status.is_failed,
        status.is_cancelled,
        status.is_final,
    ) == PROPERTIES[state]
    assert status.message == "msg"


def test_status_accepts_wire_ints_and_alias() -> None:
    assert xm.ExperimentUnitStatus(3).state is S.RUNNING
    assert xm.ExperimentUnitStatus(S.RUNNING).message == ""
    assert xm.WorkUnitStatus is xm.ExperimentUnitStatus
    with pytest.raises(ValueError, match="99"):
        xm.ExperimentUnitStatus(99)


def test_error_hierarchy() -> None:
    assert issubclass(xm.ExperimentUnitError, RuntimeError)
    assert issubclass(xm.ExperimentUnitFailedError, xm.ExperimentUnitError)
    assert issubclass(xm.ExperimentUnitNotCompletedError, xm.ExperimentUnitError)
    assert issubclass(xm.NotFoundError, KeyError)
    error = xm.ExperimentUnitFailedError(None, xm.ExperimentUnitStatus(S.FAILED, "exit code 3"))
    assert str(error) == "Failed: experiment unit ended in state FAILED: exit code 3"
    assert error.status is not None
    assert error.unit is None
    assert str(xm.ExperimentUnitFailedError(None, message="boom")) == "boom"
