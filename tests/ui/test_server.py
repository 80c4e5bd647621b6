"""Every dashboard endpoint over real HTTP, against a real daemon: good and bad input."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import DaemonHandle
from tests.ui.support import TOKEN, UiServer, make_sweep, release, wait_state
from xmanager.launcher.v1 import launcher_pb2 as pb

PARAMS = [
    {"lr": 0.1, "model": "resnet", "opt": {"beta": 0.9}},
    {"lr": 0.01, "model": "vit", "opt": {"beta": 0.99}},
    {"lr": 0.001, "model": "resnet", "opt": {"beta": 0.9}},
    {"lr": 0.3, "model": "mlp"},
]


@pytest.fixture(scope="module")
def finished(ui_daemon: DaemonHandle, jobs_dir: Path) -> int:
    """A finished sweep: units 1, 3, 4 succeed, unit 2 fails with exit code 3."""
    directory = jobs_dir / "finished"
    experiment_id, _ = make_sweep(
        ui_daemon.client,
        directory,
        PARAMS,
        title="finished sweep",
        tags=("ui", "done"),
        codes=[0, 3, 0, 0],
        lines=2000,
    )
    ui_daemon.wait_all_final(experiment_id, len(PARAMS))
    return experiment_id


@pytest.fixture
def waiting(ui_daemon: DaemonHandle) -> Iterator[tuple[int, Path]]:
    """A sweep of two units that run until released (or their directory is removed)."""
    directory = Path(tempfile.mkdtemp(prefix="xm-ui-w-", dir="/tmp"))
    try:
        experiment_id, _ = make_sweep(
            ui_daemon.client, directory, PARAMS[:2], title="waiting sweep", wait=True
        )
        for unit in (1, 2):
            wait_state(ui_daemon.client, experiment_id, unit, pb.JOB_STATE_RUNNING)
        yield experiment_id, directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _state(daemon: DaemonHandle, experiment_id: int, unit: int) -> int:
    return int(
        daemon.client.stub.GetWorkUnit(
            pb.GetWorkUnitRequest(experiment_id=experiment_id, work_unit_id=unit)
        ).status.state
    )


# -- access ------------------------------------------------------------------------------------


def test_every_page_needs_a_login(ui: UiServer, finished: int) -> None:
    anonymous = httpx.Client(base_url=ui.url)
    page = anonymous.get("/")
    assert page.status_code == 401
    assert "one-time URL" in page.text
    api = anonymous.get(f"/api/experiments/{finished}/units")
    assert api.status_code == 401
    assert "log in at /login" in api.json()["error"]
    assert anonymous.get("/static/ui.css").status_code == 200  # the login page's style


def test_a_login_code_works_once(ui: UiServer) -> None:
    client = httpx.Client(base_url=ui.url)
    url = ui.login_url()
    first = client.get(url, follow_redirects=False)
    assert first.status_code == 303
    assert "xm_ui_session" in first.headers["set-cookie"]
    assert "httponly" in first.headers["set-cookie"].lower()
    assert client.get("/").status_code == 200
    again = httpx.Client(base_url=ui.url).get(url)
    assert again.status_code == 401
    assert "already used" in again.text


def test_login_with_the_daemon_token(ui: UiServer) -> None:
    client = httpx.Client(base_url=ui.url)
    assert client.get("/login").status_code == 200
    wrong = client.post("/login", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "wrong token" in wrong.text
    right = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303
    assert client.get("/").status_code == 200


def test_a_forged_cookie_is_refused(ui: UiServer) -> None:
    client = httpx.Client(base_url=ui.url, cookies={"xm_ui_session": "abc.def"})
    assert client.get("/").status_code == 401


def test_other_hosts_are_refused_on_loopback(ui: UiServer) -> None:
    response = ui.client().get("/", headers={"host": "attacker.example:80"})
    assert response.status_code == 403
    assert "loopback only" in response.text


def test_actions_need_the_csrf_token_and_change_nothing_without(
    ui: UiServer, ui_daemon: DaemonHandle, waiting: tuple[int, Path]
) -> None:
    experiment_id, directory = waiting
    client = ui.client()
    for url in (
        f"/api/experiments/{experiment_id}/units/1/cancel",
        f"/api/experiments/{experiment_id}/cancel",
        f"/api/experiments/{experiment_id}/annotations",
    ):
        response = client.post(url, json={"title": "changed"})
        assert response.status_code == 403, url
        assert "CSRF" in response.json()["error"]
        bad = client.post(url, json={"title": "changed"}, headers={"x-csrf-token": "0" * 64})
        assert bad.status_code == 403
    anonymous = httpx.Client(base_url=ui.url).post(f"/api/experiments/{experiment_id}/cancel")
    assert anonymous.status_code == 401
    assert _state(ui_daemon, experiment_id, 1) == pb.JOB_STATE_RUNNING
    title = ui_daemon.client.stub.GetExperiment(
        pb.GetExperimentRequest(experiment_id=experiment_id)
    ).title
    assert title == "waiting sweep"
    release(directory, 1)
    release(directory, 2)


# -- experiments -------------------------------------------------------------------------------


def test_experiment_list_filters(ui: UiServer, finished: int) -> None:
    client = ui.client()
    page = client.get("/").text
    assert "finished sweep" in page
    assert "1 failed" in page
    assert "3 succeeded" in page
    assert "finished sweep" in client.get("/", params={"q": "FINISHED"}).text
    assert "finished sweep" not in client.get("/", params={"q": "no such title"}).text
    assert "finished sweep" in client.get("/", params={"tags": "ui,done"}).text
    assert "finished sweep" not in client.get("/", params={"tags": "other"}).text
    assert "finished sweep" in client.get("/", params={"status": "FAILED"}).text
    assert "finished sweep" not in client.get("/", params={"status": "RUNNING"}).text
    bad = client.get("/", params={"status": "BROKEN"})
    assert bad.status_code == 400
    assert "unknown status &#39;BROKEN&#39;" in bad.text
    assert client.get("/", params={"size": "x"}).status_code == 400


def test_experiment_page_and_unknown_ids(ui: UiServer, finished: int) -> None:
    client = ui.client()
    page = client.get(f"/experiments/{finished}")
    assert page.status_code == 200
    assert "finished sweep" in page.text
    missing = client.get("/experiments/999999")
    assert missing.status_code == 404
    assert "999999" in missing.text
    assert client.get("/experiments/abc").status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.get("/api/experiments/999999/units").status_code == 404
    assert "999999" in client.get("/api/experiments/999999/units").json()["error"]


def test_units_sorted_and_filtered_by_hyperparameters(ui: UiServer, finished: int) -> None:
    client = ui.client()
    base = f"/api/experiments/{finished}/units"
    page = client.get(base).json()
    assert page["total"] == 4
    assert page["columns"] == ["lr", "model", "opt.beta"]
    failed = next(r for r in page["rows"] if r["id"] == 2)
    assert failed["state"] == "FAILED"
    assert failed["exit_code"] == 3
    assert failed["jobs"][0]["backend"] == "local"
    assert failed["jobs"][0]["artifact"].endswith("job.py")
    by_lr = client.get(base, params={"sort": "lr", "desc": "1"}).json()["rows"]
    assert [r["params"]["lr"] for r in by_lr] == [0.3, 0.1, 0.01, 0.001]
    missing_last = client.get(base, params={"sort": "opt.beta"}).json()["rows"]
    assert [r["id"] for r in missing_last] == [1, 3, 2, 4]
    small = client.get(base, params={"f.lr": "<0.05"}).json()
    assert sorted(r["id"] for r in small["rows"]) == [2, 3]
    assert small["matched"] == 2
    text = client.get(base, params={"f.model": "RES"}).json()
    assert sorted(r["id"] for r in text["rows"]) == [1, 3]
    state = client.get(base, params={"state": "FAILED"}).json()
    assert [r["id"] for r in state["rows"]] == [2]
    paged = client.get(base, params={"offset": 3, "limit": 2}).json()
    assert [r["id"] for r in paged["rows"]] == [4]
    assert client.get(base, params={"offset": 1000}).json()["rows"] == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "nope"}, "no column 'nope'"),
        ({"f.nope": "1"}, "no column 'nope'"),
        ({"f.lr": "<abc"}, "not a number"),
        ({"limit": "501"}, "'limit' must be between 1 and 500"),
        ({"limit": "0"}, "'limit' must be between 1 and 500"),
        ({"offset": "-1"}, "'offset' must be between"),
        ({"offset": "x"}, "'offset' must be an integer"),
    ],
)
def test_bad_table_queries(
    ui: UiServer, finished: int, params: dict[str, str], message: str
) -> None:
    response = ui.client().get(f"/api/experiments/{finished}/units", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_timeline_and_chart(ui: UiServer, finished: int) -> None:
    client = ui.client()
    timeline = client.get(f"/api/experiments/{finished}/timeline").json()
    assert len(timeline["bars"]) == 4
    unit, job, queued, start, end, state = timeline["bars"][1]
    assert (unit, job, state) == (2, "train", "FAILED")
    assert 0 <= queued <= start <= end
    chart = client.get(f"/api/experiments/{finished}/chart", params={"param": "model"}).json()
    assert {b["value"]: b["counts"] for b in chart["buckets"]} == {
        "mlp": {"SUCCEEDED": 1},
        "resnet": {"SUCCEEDED": 2},
        "vit": {"FAILED": 1},
    }
    assert client.get(f"/api/experiments/{finished}/chart").status_code == 400
    unknown = client.get(f"/api/experiments/{finished}/chart", params={"param": "zzz"})
    assert unknown.status_code == 400
    assert "no work unit of this sweep has a hyperparameter 'zzz'" in unknown.json()["error"]
    assert client.get("/api/experiments/999999/timeline").status_code == 404


# -- logs --------------------------------------------------------------------------------------


def test_log_tail_window_with_colours(ui: UiServer, finished: int) -> None:
    client = ui.client()
    base = f"/api/experiments/{finished}/units/2/logs"
    tail = client.get(base, params={"job": "train", "offset": -200, "limit": 200}).json()
    assert tail["end"] - tail["start"] == 200
    assert '<span class="fg-red b">error:</span> failing on purpose' in tail["html"]
    head = client.get(base, params={"offset": 0, "limit": 100}).json()
    assert head["start"] == 0
    assert '<span class="fg-green">starting</span>' in head["html"]
    assert len(head["html"]) < 200
    page = client.get(f"/experiments/{finished}/units/2/logs")
    assert page.status_code == 200
    assert "exited with code 3" in page.text


def test_log_bad_input(ui: UiServer, finished: int) -> None:
    client = ui.client()
    base = f"/api/experiments/{finished}/units/2/logs"
    huge = client.get(base, params={"offset": 10**12})
    assert huge.status_code == 416
    assert "past the end of the log" in huge.json()["error"]
    assert client.get(base, params={"offset": 10**20}).status_code == 400
    assert client.get(base, params={"limit": 10**8}).status_code == 400
    assert client.get(base, params={"stream": "stdin"}).status_code == 400
    job = client.get(base, params={"job": "nope"})
    assert job.status_code == 404
    assert "nope" in job.json()["error"]
    assert client.get(f"/api/experiments/{finished}/units/99/logs").status_code == 404
    assert client.get(f"/experiments/{finished}/units/99/logs").status_code == 404
    assert client.get(f"/experiments/{finished}/units/2/logs?job=nope").status_code == 404
    assert client.get(f"/experiments/{finished}/units/2/logs/download?job=nope").status_code == 404


def test_log_download_streams_the_whole_log(ui: UiServer, finished: int) -> None:
    response = ui.client().get(f"/experiments/{finished}/units/2/logs/download")
    assert response.status_code == 200
    assert 'filename="xm-' in response.headers["content-disposition"]
    text = response.text
    assert text.count("line ") == 2000
    assert "\x1b[1;31merror:" in text


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            if name in ("end", "failure") or (name == "update" and events):
                return events
    return events


def test_follow_a_log_until_the_job_ends(
    ui: UiServer, ui_daemon: DaemonHandle, waiting: tuple[int, Path]
) -> None:
    experiment_id, directory = waiting
    client = ui.client()
    url = f"/api/experiments/{experiment_id}/units/1/logs/follow"
    release(directory, 1)
    with client.stream("GET", url, params={"offset": 0}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        html = ""
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                if name == "end":
                    break
                html += json.loads(line[6:])["html"]
    assert "starting" in html
    assert "line 2" in html
    release(directory, 2)


def test_live_unit_events(ui: UiServer, waiting: tuple[int, Path]) -> None:
    experiment_id, directory = waiting
    client = ui.client()
    with client.stream("GET", f"/api/experiments/{experiment_id}/events") as response:
        name, data = _events(response)[0]
    assert name == "update"
    assert {u["id"] for u in data["units"]} == {1, 2}
    assert data["counts"] == {"RUNNING": 2}
    assert client.get("/api/experiments/999999/events").status_code == 404
    release(directory, 1)
    release(directory, 2)


# -- actions -----------------------------------------------------------------------------------


def test_cancel_a_unit_and_an_experiment(
    ui: UiServer, ui_daemon: DaemonHandle, waiting: tuple[int, Path]
) -> None:
    experiment_id, _ = waiting
    client = ui.client()
    headers = {"x-csrf-token": ui.csrf(client, experiment_id)}
    unit = client.post(f"/api/experiments/{experiment_id}/units/1/cancel", headers=headers)
    assert unit.status_code == 200
    assert unit.json()["state"] in ("CANCELLING", "CANCELLED")
    wait_state(ui_daemon.client, experiment_id, 1, pb.JOB_STATE_CANCELLED)
    assert _state(ui_daemon, experiment_id, 2) == pb.JOB_STATE_RUNNING
    missing = client.post(f"/api/experiments/{experiment_id}/units/77/cancel", headers=headers)
    assert missing.status_code == 404
    assert client.post("/api/experiments/999999/cancel", headers=headers).status_code == 404
    everything = client.post(f"/api/experiments/{experiment_id}/cancel", headers=headers)
    assert everything.json() == {"cancelled_work_units": 1}
    wait_state(ui_daemon.client, experiment_id, 2, pb.JOB_STATE_CANCELLED)
    assert client.get(f"/api/experiments/{experiment_id}/cancel").status_code == 405


def test_annotations(ui: UiServer, ui_daemon: DaemonHandle, finished: int) -> None:
    client = ui.client()
    headers = {"x-csrf-token": ui.csrf(client, finished)}
    url = f"/api/experiments/{finished}/annotations"
    for body, message in [
        ({"color": "red"}, "unknown field"),
        ({}, "nothing to change"),
        ({"tags": [1]}, "'tags' must be"),
        ({"title": 5}, "'title' must be a string"),
    ]:
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 400
        assert message in response.json()["error"]
    bad_json = client.post(url, content=b"{", headers=headers)
    assert bad_json.status_code == 400
    assert (
        client.post(
            "/api/experiments/999999/annotations", json={"title": "x"}, headers=headers
        ).status_code
        == 404
    )
    stored = ui_daemon.client.stub.GetExperiment(pb.GetExperimentRequest(experiment_id=finished))
    assert stored.title == "finished sweep"
    changed = client.post(
        url,
        json={"title": "renamed", "tags": "ui, done, best", "notes": "lr 0.1 wins"},
        headers=headers,
    )
    assert changed.status_code == 200
    assert changed.json() == {
        "title": "renamed",
        "tags": ["ui", "done", "best"],
        "notes": "lr 0.1 wins",
    }
    stored = ui_daemon.client.stub.GetExperiment(pb.GetExperimentRequest(experiment_id=finished))
    assert (stored.title, list(stored.tags), stored.notes) == (
        "renamed",
        ["ui", "done", "best"],
        "lr 0.1 wins",
    )
    client.post(url, json={"title": "finished sweep"}, headers=headers)


def test_a_reloaded_page_gets_only_what_changed_since_its_table(
    ui: UiServer, ui_daemon: DaemonHandle, waiting: tuple[int, Path]
) -> None:
    experiment_id, directory = waiting
    client = ui.client()
    events = f"/api/experiments/{experiment_id}/events"
    with client.stream("GET", events) as first:
        _, snapshot = _events(first)[0]
        assert {u["id"] for u in snapshot["units"]} == {1, 2}
        # The page's table now carries the shared watch's version...
        table = client.get(f"/api/experiments/{experiment_id}/units").json()
        assert table["version"] >= snapshot["version"]
        # ...and a page subscribing with it is told only of later changes.
        with client.stream("GET", events, params={"since": table["version"]}) as second:
            release(directory, 1)
            _, update = _events(second)[0]
    assert [u["id"] for u in update["units"]] == [1]
    assert update["counts"]["RUNNING"] == 1
    bad = client.get(events, params={"since": "x"})
    assert bad.status_code == 400
    release(directory, 2)
