"""Access to clusters: API clients from a kubeconfig (a context) or in-cluster config, raw JSON
calls, and retries that ride out throttling and API server outages."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Statuses worth retrying: throttled, or the API server (or its proxy) briefly unwell.
RETRYABLE = frozenset({429, 500, 502, 503, 504})
IN_CLUSTER_HOST = "KUBERNETES_SERVICE_HOST"


class ConfigError(Exception):
    """No usable cluster configuration; the message says what to set."""


class ApiError(Exception):
    """The API server refused a request (not worth retrying)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


def kubeconfig_path(flag: str) -> str:
    """The kubeconfig to use: the daemon flag, else $KUBECONFIG, else ~/.kube/config if any."""
    if flag:
        return flag
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env.split(os.pathsep)[0]
    default = Path.home() / ".kube" / "config"
    return str(default) if default.is_file() else ""


def load(kubeconfig: str, context: str) -> Any:
    """An ApiClient for `context` of `kubeconfig` (or in-cluster config without a kubeconfig)."""
    path = kubeconfig_path(kubeconfig)
    if path and not Path(path).is_file():
        raise ConfigError(
            f"the kubeconfig {path} does not exist; set the daemon's --kubeconfig or "
            "$KUBECONFIG to an existing file"
        )
    if not path and not os.environ.get(IN_CLUSTER_HOST):
        raise ConfigError(
            "no cluster configured: start the daemon with --kubeconfig=PATH (or set "
            "$KUBECONFIG, or create ~/.kube/config), or run it inside a cluster"
        )
    import kubernetes  # noqa: PLC0415  # heavy: imported when a cluster is first used

    try:
        if path:
            return kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context or None
            )
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
        return kubernetes.client.ApiClient(configuration)
    except kubernetes.config.ConfigException as error:
        raise ConfigError(
            f"cannot use the kubeconfig {path or '(in-cluster)'}"
            f"{f' context {context!r}' if context else ''}: {error}; fix it or choose a context "
            "with the daemon's --kubernetes_context or xm_local.Kubernetes(context=...)"
        ) from None


def server_url(api_client: Any) -> str:
    return str(api_client.configuration.host)


def _is_transient(error: BaseException) -> bool:
    import urllib3  # noqa: PLC0415

    status = getattr(error, "status", None)
    if isinstance(status, int) and status in RETRYABLE:
        return True
    return isinstance(error, urllib3.exceptions.HTTPError | OSError)


def _api_error(error: BaseException) -> ApiError:
    status = int(getattr(error, "status", 0) or 0)
    reason = str(getattr(error, "reason", "") or "")
    message = ""
    body = getattr(error, "body", None)
    if body:
        try:
            message = str(json.loads(body).get("message", ""))
        except (ValueError, AttributeError):
            message = str(body)[:500]
    return ApiError(status, reason, message)


def call(
    fn: Callable[..., Any],
    *args: Any,
    stop: threading.Event | None = None,
    attempts: int | None = None,
    **kwargs: Any,
) -> Any:
    """fn(*args, **kwargs) returning parsed JSON; retries transient failures with backoff.

    Retries forever (attempts=None) unless `stop` is set: an API server outage delays work
    but never fails it. Raises ApiError for a refusal, or the last transient error.
    """
    import kubernetes  # noqa: PLC0415

    delay = 0.2
    attempt = 0
    while True:
        attempt += 1
        try:
            response = fn(*args, _preload_content=False, _request_timeout=(10, 60), **kwargs)
            data = response.data
            return json.loads(data) if data else {}
        except kubernetes.client.exceptions.ApiException as error:
            if not _is_transient(error):
                raise _api_error(error) from None
            last: BaseException = error
        except Exception as error:
            if not _is_transient(error):
                raise
            last = error
        if (attempts is not None and attempt >= attempts) or (stop is not None and stop.is_set()):
            if isinstance(last, kubernetes.client.exceptions.ApiException):
                raise _api_error(last) from None
            raise last
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 10.0)
