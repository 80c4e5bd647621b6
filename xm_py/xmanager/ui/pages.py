"""The HTML pages: login, the experiment list, an experiment, a job's logs."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows
from xmanager.ui.auth import COOKIE
from xmanager.ui.web import gateway, guard, int_param, path_id, render

_EXPERIMENTS_PER_PAGE = 50


def _logged_in(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        guard(request).new_session(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def login(request: Request) -> Response:
    """GET with the one-time code logs in; otherwise a form asking for the daemon's token."""
    code = request.query_params.get("code")
    if code is not None:
        if guard(request).redeem(code):
            return _logged_in(request)
        return render(
            request,
            "login.html",
            {"error": "this login link was already used or is unknown: log in with the token"},
            status=401,
        )
    if request.method == "POST":
        form = await request.form()
        token = str(form.get("token", ""))
        if token and guard(request).token_matches(token):
            return _logged_in(request)
        return render(
            request,
            "login.html",
            {
                "error": "wrong token: paste the content of the file 'token' in the daemon's "
                "state directory"
            },
            status=401,
        )
    return render(request, "login.html", {"error": None})


async def experiments(request: Request) -> Response:
    query = request.query_params
    text = query.get("q", "").strip()
    tags = [t.strip() for t in query.get("tags", "").split(",") if t.strip()]
    status = query.get("status", "")
    if status and status not in rows.STATE_BY_NAME:
        raise HTTPException(
            400, f"unknown status {status!r}; one of {', '.join(list(rows.STATE_BY_NAME)[1:])}"
        )
    size = int_param(request, "size", _EXPERIMENTS_PER_PAGE, low=1, high=200)
    list_request = pb.ListExperimentsRequest(
        page_size=size,
        page_token=query.get("page", ""),
        title_contains=text,
        tags=tags,
        has_work_unit_in_state=[f"JOB_STATE_{status}"] if status else [],
    )
    response = await gateway(request).list_experiments(list_request)
    listed = [
        {
            "id": e.id,
            "title": e.title,
            "tags": list(e.tags),
            "creator": e.creator,
            "created": rows.seconds(e.create_time),
            "count": e.work_unit_count,
            "counts": rows.state_counts(e),
        }
        for e in response.experiments
    ]
    base = {"q": text, "tags": ",".join(tags), "status": status}
    older = (
        "/?" + urlencode({**base, "page": response.next_page_token})
        if response.next_page_token
        else None
    )
    return render(
        request,
        "experiments.html",
        {
            "experiments": listed,
            "filters": base,
            "states": list(rows.STATE_BY_NAME)[1:],
            "older": older,
            "first": "/?" + urlencode(base) if query.get("page") else None,
        },
    )


async def experiment(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    found = await gateway(request).experiment(experiment_id)
    context: dict[str, Any] = {
        "experiment": found,
        "counts": rows.state_counts(found),
        "created": rows.seconds(found.create_time),
        "states": list(rows.STATE_BY_NAME)[1:],
        "boot": json.dumps({"experiment": experiment_id, "count": found.work_unit_count}),
    }
    return render(request, "experiment.html", context)


async def logs(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    work_unit_id = path_id(request, "work_unit_id")
    unit = await gateway(request).work_unit(experiment_id, work_unit_id)
    names = [job.name for job in unit.jobs]
    job = request.query_params.get("job") or names[0]
    if job not in names:
        raise HTTPException(
            404,
            f"work unit {experiment_id}/{work_unit_id} has no job {job!r}; its jobs are "
            f"{', '.join(names)}",
        )
    return render(
        request,
        "logs.html",
        {
            "experiment_id": experiment_id,
            "unit": rows.unit_row(unit),
            "job": job,
            "jobs": names,
            "boot": json.dumps({"experiment": experiment_id, "unit": work_unit_id, "job": job}),
        },
    )
