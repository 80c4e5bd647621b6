"""One watch of one resource kind in one namespace: list once, then follow changes.

Resumes from the last resourceVersion seen (bookmarks keep it fresh while nothing of ours
changes), re-lists only on 410 Gone, and rides out disconnects, throttling and API server
outages with backoff. Its cost is one request per watch timeout, whatever the number of jobs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from launcher_server.backends.kubernetes import client

_log = logging.getLogger(__name__)
Obj = Mapping[str, Any]
# Server-side watch timeout: the stream ends and is resumed from the last version this often.
WATCH_SECONDS = 300
_MAX_BACKOFF = 30.0


class Watch:
    """Delivers `on_event(type, obj)` for ADDED/MODIFIED/DELETED, and `on_list(objects)` with
    the complete state after each (re-)list, from its own thread."""

    def __init__(
        self,
        *,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str,
        on_list: Callable[[Sequence[Obj]], None],
        on_event: Callable[[str, Obj], None],
        stop: threading.Event,
        name: str,
    ) -> None:
        self._list = list_fn
        self._namespace = namespace
        self._selector = selector
        self._on_list = on_list
        self._on_event = on_event
        self._stop = stop
        self.synced = threading.Event()
        self.relists = 0
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def close(self) -> None:
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # best effort: the thread is a daemon anyway
                _log.debug("closing a watch", exc_info=True)

    def _relist(self) -> str:
        listing = client.call(
            self._list, self._namespace, label_selector=self._selector, stop=self._stop
        )
        self.relists += 1
        self._on_list(listing.get("items") or [])
        self.synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _run(self) -> None:
        version = ""
        delay = 0.5
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                self._response = self._list(
                    self._namespace,
                    label_selector=self._selector,
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=WATCH_SECONDS,
                    _preload_content=False,
                    _request_timeout=(10, WATCH_SECONDS + 30),
                )
                for event in _events(self._response):
                    kind = event.get("type")
                    obj = event.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            version = ""  # history compacted: list again
                        else:
                            _log.warning("watch error: %s", obj.get("message"))
                        break
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind != "BOOKMARK":
                        self._on_event(str(kind), obj)
                    delay = 0.5
                    if self._stop.is_set():
                        return
            except Exception as error:  # outages: back off and resume
                if self._stop.is_set():
                    return
                status = getattr(error, "status", None)
                if status == 410:
                    version = ""
                _log.info("watch of %s interrupted (%s); resuming", self._namespace, error)
                self._stop.wait(delay * (0.5 + random.random()))
                delay = min(delay * 2, _MAX_BACKOFF)
            finally:
                response, self._response = self._response, None
                if response is not None:
                    response.release_conn()


def _events(response: Any) -> Iterator[dict[str, Any]]:
    buffer = b""
    for chunk in response.stream(64 * 1024, decode_content=True):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)
