"""The official Google clients the Vertex AI backend talks through, one per endpoint.

`http://HOST:PORT` endpoints are emulators: an insecure gRPC channel and no credentials (the
client only opens a plain channel when given a transport built on one). Anything else is a
real endpoint with application-default credentials over TLS. The libraries are imported here,
lazily, so the daemon starts fast and runs without them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

INSECURE_PREFIX = "http://"
LOGGING_ENDPOINT = "logging.googleapis.com"


def has_credentials() -> bool:
    """Whether application-default credentials are there, without a network call: a key file
    ($GOOGLE_APPLICATION_CREDENTIALS or gcloud's), or a Google Compute Engine machine."""
    key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if key:
        return Path(key).is_file()
    config = os.environ.get("CLOUDSDK_CONFIG") or str(Path.home() / ".config" / "gcloud")
    if (Path(config) / "application_default_credentials.json").is_file():
        return True
    if os.environ.get("GCE_METADATA_HOST"):
        return True
    try:
        return "Google" in Path("/sys/class/dmi/id/product_name").read_text()
    except OSError:
        return False


def api_endpoint(endpoint: str, region: str) -> str:
    return endpoint or f"{region}-aiplatform.googleapis.com"


class Connections:
    """Clients cached per endpoint (JobService per regional endpoint, one Logging client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}

    def jobs(self, endpoint: str) -> Any:
        """A `JobServiceClient` for `endpoint` (host[:port], or http://host:port)."""
        return self._cached("jobs", endpoint, _job_client)

    def logging(self, endpoint: str) -> Any:
        return self._cached("logging", endpoint or LOGGING_ENDPOINT, _logging_client)

    def _cached(self, kind: str, endpoint: str, make: Any) -> Any:
        with self._lock:
            client = self._clients.get((kind, endpoint))
            if client is None:
                client = self._clients[(kind, endpoint)] = make(endpoint)
            return client


def _job_client(endpoint: str) -> Any:
    from google.cloud import aiplatform_v1  # noqa: PLC0415
    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import (  # noqa: PLC0415
        JobServiceGrpcTransport,
    )

    if endpoint.startswith(INSECURE_PREFIX):
        import grpc  # noqa: PLC0415

        channel = grpc.insecure_channel(endpoint.removeprefix(INSECURE_PREFIX))
        return aiplatform_v1.JobServiceClient(transport=JobServiceGrpcTransport(channel=channel))
    return aiplatform_v1.JobServiceClient(client_options={"api_endpoint": endpoint})


def _logging_client(endpoint: str) -> Any:
    from google.cloud.logging_v2.services.logging_service_v2 import (  # noqa: PLC0415
        LoggingServiceV2Client,
    )
    from google.cloud.logging_v2.services.logging_service_v2.transports.grpc import (  # noqa: PLC0415
        LoggingServiceV2GrpcTransport,
    )

    if endpoint.startswith(INSECURE_PREFIX):
        import grpc  # noqa: PLC0415

        channel = grpc.insecure_channel(endpoint.removeprefix(INSECURE_PREFIX))
        return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))
    return LoggingServiceV2Client(client_options={"api_endpoint": endpoint})


def is_transient(error: BaseException) -> bool:
    """Whether a failed call may succeed later: quota (429), outages, timeouts."""
    from google.api_core import exceptions  # noqa: PLC0415

    return isinstance(
        error,
        exceptions.TooManyRequests
        | exceptions.ServiceUnavailable
        | exceptions.DeadlineExceeded
        | exceptions.InternalServerError
        | exceptions.BadGateway
        | exceptions.GatewayTimeout
        | exceptions.RetryError
        | exceptions.Aborted
        | exceptions.Unknown,
    )


def is_quota(error: BaseException) -> bool:
    from google.api_core import exceptions  # noqa: PLC0415

    return isinstance(error, exceptions.TooManyRequests)
