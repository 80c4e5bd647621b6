"""The JSON endpoints the pages call: a page of a sweep's table, its timeline and chart, a
window of a log, and the actions (annotations, cancellation)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows, sweep
from xmanager.ui.ansi import AnsiToHtml
from xmanager.ui.gateway import Sweep
from xmanager.ui.web import gateway, int_param, path_id, watches

# A log window is at most this many bytes (a page of logs, never the whole log).
MAX_LOG_WINDOW = 1024 * 1024
DEFAULT_LOG_WINDOW = 64 * 1024
# Offsets beyond any real log (the daemon caps logs far below this).
_MAX_OFFSET = 1 << 50
_STREAMS = {
    "": pb.LOG_STREAM_UNSPECIFIED,
    "stdout": pb.LOG_STREAM_STDOUT,
    "stderr": pb.LOG_STREAM_STDERR,
}


def _query(request: Request) -> sweep.Query:
    params = request.query_params
    filters = tuple(
        (key[2:], value) for key, value in params.multi_items() if key.startswith("f.") and value
    )
    if params.get("state"):
        filters += (("state", "=" + params["state"]),)
    return sweep.Query(
        sort=params.get("sort", "id") or "id",
        descending=params.get("desc", "") in ("1", "true"),
        filters=filters,
        offset=int_param(request, "offset", 0, low=0, high=10_000_000),
        limit=int_param(request, "limit", 100, low=1, high=sweep.MAX_PAGE_SIZE),
    )


async def units(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    query = _query(request)
    daemon = gateway(request)
    listed = daemon.cached_sweep(experiment_id)
    # Read with the rows (nothing awaits in between when they come from the list): the page's
    # live updates start after it.
    version = watches(request).version(experiment_id)
    try:
        if listed is None and sweep.is_plain(query):
            # A sweep opened for the first time: its first page costs one short call, while
            # the whole list (seconds for thousands of units) is read in the background.
            if not 1 <= query.limit <= sweep.MAX_PAGE_SIZE:
                raise sweep.QueryError(f"limit must be between 1 and {sweep.MAX_PAGE_SIZE}")
            experiment = await daemon.experiment(experiment_id)
            daemon.warm(experiment_id)
            first = await daemon.first_units(experiment_id, query.limit)
            page = sweep.page(first, query, total=experiment.work_unit_count)
            page.matched = experiment.work_unit_count
        else:
            if listed is None:
                await daemon.experiment(experiment_id)  # 404 for an unknown experiment
                listed = await daemon.sweep(experiment_id)
            page = sweep.page(listed.units, query, listed.params)
    except sweep.QueryError as error:
        raise HTTPException(400, str(error)) from None
    return JSONResponse(
        {
            "total": page.total,
            "matched": page.matched,
            "offset": query.offset,
            "version": version,
            "columns": page.columns,
            "rows": page.rows,
        }
    )


async def _listed(request: Request, experiment_id: int) -> Sweep:
    daemon = gateway(request)
    if daemon.cached_sweep(experiment_id) is None:
        await daemon.experiment(experiment_id)  # 404 for an unknown experiment
    return await daemon.sweep(experiment_id)


async def timeline(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    listed = await _listed(request, experiment_id)
    return JSONResponse(sweep.timeline(listed.units))


async def chart(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    parameter = request.query_params.get("param", "")
    if not parameter:
        raise HTTPException(400, "parameter 'param' is required: the hyperparameter to chart")
    listed = await _listed(request, experiment_id)
    try:
        return JSONResponse(sweep.status_by_parameter(listed.units, parameter, listed.params))
    except sweep.QueryError as error:
        raise HTTPException(400, str(error)) from None


def log_request(request: Request, *, follow: bool = False) -> pb.StreamLogsRequest:
    stream = request.query_params.get("stream", "")
    if stream not in _STREAMS:
        raise HTTPException(
            400, f"parameter 'stream' must be stdout, stderr or empty, not {stream!r}"
        )
    return pb.StreamLogsRequest(
        experiment_id=path_id(request, "experiment_id"),
        work_unit_id=path_id(request, "work_unit_id"),
        job_name=request.query_params.get("job", ""),
        stream=_STREAMS[stream],
        offset=int_param(
            request, "offset", -DEFAULT_LOG_WINDOW, low=-_MAX_OFFSET, high=_MAX_OFFSET
        ),
        follow=follow,
    )


async def log_window(request: Request) -> Response:
    """Up to `limit` bytes of a log from `offset` (negative: from the end), as HTML."""
    log = log_request(request)
    limit = int_param(request, "limit", DEFAULT_LOG_WINDOW, low=1, high=MAX_LOG_WINDOW)
    start, data, truncated = await gateway(request).read_log(log, limit)
    if not data and log.offset > 0:
        # Past the end, or exactly at it? The last byte's offset tells.
        end_probe = pb.StreamLogsRequest()
        end_probe.CopyFrom(log)
        end_probe.offset = -1
        last, tail, _ = await gateway(request).read_log(end_probe, 1)
        size = last + len(tail)
        if log.offset > size:
            raise HTTPException(
                416,
                f"offset {log.offset} is past the end of the log ({size} bytes); "
                "ask for an offset up to the log's size, or a negative one for its tail",
            )
    return JSONResponse(
        {
            "start": start,
            "end": start + len(data),
            "html": AnsiToHtml().convert(data.decode("utf-8", errors="replace")),
            "truncated": truncated,
        }
    )


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 1024 * 1024:
        raise HTTPException(413, "request body over 1 MiB")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise HTTPException(400, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


async def annotate(request: Request) -> Response:
    """Sets title, tags and/or notes: whichever the JSON body has."""
    experiment_id = path_id(request, "experiment_id")
    body = await _body(request)
    update = pb.UpdateExperimentRequest(experiment_id=experiment_id)
    unknown = set(body) - {"title", "tags", "notes"}
    if unknown:
        raise HTTPException(
            400, f"unknown field(s) {sorted(unknown)}: send title, tags and/or notes"
        )
    if "title" in body:
        if not isinstance(body["title"], str):
            raise HTTPException(400, "'title' must be a string")
        update.title = body["title"]
        update.update_mask.append("title")
    if "tags" in body:
        tags = body["tags"]
        if isinstance(tags, str):
            tags = [t.strip() for t in tags.split(",") if t.strip()]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise HTTPException(400, "'tags' must be a list of strings or a comma-separated string")
        update.tags.extend(tags)
        update.update_mask.append("tags")
    if "notes" in body:
        if not isinstance(body["notes"], str):
            raise HTTPException(400, "'notes' must be a string")
        update.notes = body["notes"]
        update.update_mask.append("notes")
    if not update.update_mask:
        raise HTTPException(400, "nothing to change: send title, tags and/or notes")
    changed = await gateway(request).update_experiment(update)
    return JSONResponse(
        {"title": changed.title, "tags": list(changed.tags), "notes": changed.notes}
    )


async def cancel_unit(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    work_unit_id = path_id(request, "work_unit_id")
    unit = await gateway(request).cancel_work_unit(experiment_id, work_unit_id)
    return JSONResponse(rows.status_update(unit))


async def cancel_experiment(request: Request) -> Response:
    experiment_id = path_id(request, "experiment_id")
    count = await gateway(request).cancel_experiment(experiment_id)
    return JSONResponse({"cancelled_work_units": count})
