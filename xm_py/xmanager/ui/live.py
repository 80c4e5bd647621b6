"""Streams to the browser: live work unit statuses and followed logs as server-sent events,
and a log download that streams the whole log without holding it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui.ansi import AnsiToHtml
from xmanager.ui.api import log_request
from xmanager.ui.web import gateway, int_param, path_id, watches

_SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def unit_events(request: Request) -> Response:
    """`update` events: changed rows and the sweep's counts by state, from the shared watch.
    `since` is the version the page's table came with: only later changes are replayed."""
    experiment_id = path_id(request, "experiment_id")
    since = int_param(request, "since", 0, low=0, high=2**62)
    await gateway(request).experiment(experiment_id)  # 404 before the stream starts
    watch = watches(request).get(experiment_id)
    queue = watch.subscribe(since)

    async def events() -> AsyncIterator[str]:
        try:
            while True:
                item = await queue.get()
                if isinstance(item, str):
                    yield _event("failure", {"error": item})
                    return
                yield _event(
                    "update", {"units": item, "counts": watch.counts(), "version": watch.version}
                )
        finally:
            watch.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def follow_log(request: Request) -> Response:
    """`chunk` events with HTML of new output, then `end` when the job is final."""
    log = log_request(request, follow=True)
    log.job_name = await _job_name(request, log)
    stub = gateway(request).launcher.stub

    async def events() -> AsyncIterator[str]:
        converter = AnsiToHtml()
        try:
            async for chunk in gateway(request).stream(stub.StreamLogs, log):
                text = chunk.data.decode("utf-8", errors="replace")
                yield _event(
                    "chunk",
                    {
                        "start": chunk.offset,
                        "end": chunk.offset + len(chunk.data),
                        "html": converter.convert(text),
                    },
                )
            yield _event("end", {})
        except grpc.RpcError as error:
            yield _event("failure", {"error": f"{error.details()} ({error.code().name})"})

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def _job_name(request: Request, log: pb.StreamLogsRequest) -> str:
    """The job a log request is about, checked before a stream starts (errors get a status)."""
    unit = await gateway(request).work_unit(log.experiment_id, log.work_unit_id)
    names = [job.name for job in unit.jobs]
    if not log.job_name and len(names) == 1:
        return names[0]
    if log.job_name not in names:
        raise HTTPException(
            404,
            f"work unit {log.experiment_id}/{log.work_unit_id} has no job {log.job_name!r}; "
            f"its jobs are {', '.join(names)}",
        )
    return log.job_name


async def download_log(request: Request) -> Response:
    log = log_request(request)
    log.offset = 0
    log.job_name = job = await _job_name(request, log)
    experiment_id, work_unit_id = log.experiment_id, log.work_unit_id
    stub = gateway(request).launcher.stub

    async def data() -> AsyncIterator[bytes]:
        async for chunk in gateway(request).stream(stub.StreamLogs, log):
            yield chunk.data

    filename = f"xm-{experiment_id}-{work_unit_id}-{job}.log"
    return StreamingResponse(
        data(),
        media_type="text/plain; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
