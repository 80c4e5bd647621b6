"""The dashboard's pure parts: ANSI rendering, hyperparameter columns, sorting, the chart."""

from __future__ import annotations

import json

import pytest

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows, sweep
from xmanager.ui.ansi import AnsiToHtml
from xmanager.ui.auth import Guard


def test_ansi_colours_escaping_and_chunk_boundaries() -> None:
    converter = AnsiToHtml()
    assert converter.convert("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    # A colour opened in one chunk carries on; an escape cut in two is joined.
    first = converter.convert("\x1b[1;32mok \x1b[")
    second = converter.convert("0m done \x1b]0;title\x07\x1b[2Kx")
    assert first == '<span class="fg-green b">ok </span>'
    assert second == " done x"
    assert AnsiToHtml().convert("\x1b[38;5;196mred\x1b[39m") == "red"
    assert AnsiToHtml().convert("\x1b[41;97mx") == '<span class="fg-bright-white bg-red">x</span>'


def test_hyperparameters_flatten() -> None:
    flat = rows.hyperparameters(json.dumps({"a": {"b": 1, "c": {}}, "l": [1, 2], "s": "x"}))
    assert flat == {"a.b": 1, "a.c": "{}", "l": "[1, 2]", "s": "x"}
    assert rows.hyperparameters("") == {}
    assert rows.hyperparameters("not json") == {"args": "not json"}
    assert rows.hyperparameters("[1]") == {"args": "[1]"}


def _units(values: list[object]) -> list[pb.WorkUnit]:
    return [
        pb.WorkUnit(
            work_unit_id=i + 1,
            args_json=json.dumps({"x": v}) if v is not None else "{}",
            status=pb.JobStatus(state=pb.JOB_STATE_SUCCEEDED if i % 2 else pb.JOB_STATE_FAILED),
        )
        for i, v in enumerate(values)
    ]


def test_sort_numbers_before_text_missing_last_either_way() -> None:
    units = _units([3, "b", None, 1.5, "a", True])
    up = sweep.page(units, sweep.Query(sort="x"))
    assert [r["id"] for r in up.rows] == [6, 4, 1, 5, 2, 3]
    down = sweep.page(units, sweep.Query(sort="x", descending=True))
    assert [r["id"] for r in down.rows] == [2, 5, 1, 4, 6, 3]


def test_filters() -> None:
    units = _units([1, 2, 3, "abc"])
    assert sweep.page(units, sweep.Query(filters=(("x", ">=2"),))).matched == 2
    assert sweep.page(units, sweep.Query(filters=(("x", "!=2"),))).matched == 3
    assert sweep.page(units, sweep.Query(filters=(("x", "B"),))).matched == 1
    assert sweep.page(units, sweep.Query(filters=(("state", "=FAILED"),))).matched == 2
    with pytest.raises(sweep.QueryError, match="not a number"):
        sweep.page(units, sweep.Query(filters=(("x", ">abc"),)))


def test_chart_bins_many_numeric_values() -> None:
    units = _units([i / 10 for i in range(100)])
    chart = sweep.status_by_parameter(units, "x")
    assert chart["binned"]
    assert len(chart["buckets"]) == 12
    assert sum(sum(b["counts"].values()) for b in chart["buckets"]) == 100
    assert chart["buckets"][0]["value"].startswith("0 to")
    few = sweep.status_by_parameter(_units([2, 10, 2]), "x")
    assert [b["value"] for b in few["buckets"]] == ["2", "10"]


def test_guard_codes_sessions_csrf() -> None:
    guard = Guard("secret")
    code = guard.one_time_code()
    assert guard.redeem(code)
    assert not guard.redeem(code)
    cookie = guard.new_session()
    session = guard.session_of(cookie)
    assert session is not None
    assert guard.session_of(cookie + "x") is None
    assert Guard("other").session_of(cookie) is None
    assert guard.csrf_ok(session, guard.csrf_token(session))
    assert not guard.csrf_ok(session, None)
    assert guard.token_matches(" secret\n")


def test_a_watched_update_lands_in_the_cached_list() -> None:
    from xmanager.ui.gateway import Sweep

    unit = pb.WorkUnit(
        work_unit_id=1,
        args_json='{"lr": 0.1}',
        jobs=[pb.Job(name="train", args=["--lr=0.1"])],
        status=pb.JobStatus(state=pb.JOB_STATE_RUNNING),
    )
    listed = Sweep([unit], [rows.hyperparameters(unit.args_json)])
    update = pb.WorkUnit(
        work_unit_id=1,
        jobs=[pb.Job(name="train", status=pb.JobStatus(state=pb.JOB_STATE_SUCCEEDED))],
        status=pb.JobStatus(state=pb.JOB_STATE_SUCCEEDED, has_exit_code=True),
    )
    assert listed.apply(update)
    assert listed.units[0].status.state == pb.JOB_STATE_SUCCEEDED
    assert listed.units[0].jobs[0].status.state == pb.JOB_STATE_SUCCEEDED
    assert list(listed.units[0].jobs[0].args) == ["--lr=0.1"]  # what a watch lacks stays
    assert not listed.apply(pb.WorkUnit(work_unit_id=2))
