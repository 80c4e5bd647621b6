"""Google Cloud credentials and project settings, with XManager's names.

Differences from XManager: `get_service_account` names the account (from
$XM_GCP_SERVICE_ACCOUNT_NAME, default "xmanager") without creating it or changing IAM policies,
and `enable_apis` only lists what to enable: this launcher never changes a project's
configuration behind its user's back.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

from xmanager.cloud import utils

_DEFAULT_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REQUIRED_APIS = (
    "aiplatform.googleapis.com",
    "logging.googleapis.com",
    "storage-api.googleapis.com",
)


def get_project_name() -> str | None:
    """The project: $GOOGLE_CLOUD_PROJECT, gcloud's configuration, then the credentials'."""
    project = utils.get_project()
    if project:
        return project
    try:
        import google.auth  # noqa: PLC0415  # heavy; needed only without a configured project

        _, project = google.auth.default()
    except Exception:  # no credentials: there is no project either
        return None
    return str(project) if project else None


def get_project_number() -> str:
    """The project's number, from the Cloud Resource Manager API."""
    from google.cloud import resourcemanager_v3  # noqa: PLC0415

    project = get_project_name()
    if not project:
        raise ValueError("No GCP project: set GOOGLE_CLOUD_PROJECT or `gcloud config set project`.")
    response = resourcemanager_v3.ProjectsClient(credentials=get_creds()).get_project(
        name=f"projects/{project}"
    )
    return str(response.name).rsplit("/", 1)[-1]


def get_creds(scopes: Sequence[str] = _DEFAULT_SCOPES) -> Any:
    """Application-default credentials (`gcloud auth application-default login`)."""
    import google.auth  # noqa: PLC0415

    credentials, _ = google.auth.default(scopes=list(scopes))
    return credentials


@functools.lru_cache
def enable_apis() -> None:
    """Raises with the `gcloud services enable` command to run (nothing is changed here)."""
    raise RuntimeError(
        "Enable the APIs this launcher uses with: gcloud services enable " + " ".join(REQUIRED_APIS)
    )


def get_service_account() -> str:
    """The service account jobs run as: $XM_GCP_SERVICE_ACCOUNT_NAME@PROJECT.iam..."""
    return service_account_of(str(get_project_name()))


def service_account_of(project: str) -> str:
    """XManager's service account in `project` ($XM_GCP_SERVICE_ACCOUNT_NAME, else xmanager)."""
    name = os.environ.get("XM_GCP_SERVICE_ACCOUNT_NAME", "xmanager")
    return f"{name}@{project}.iam.gserviceaccount.com"


def get_bucket() -> str:
    """$GOOGLE_CLOUD_BUCKET_NAME; raises ValueError saying how to set it."""
    bucket = utils.get_bucket_name()
    if bucket:
        return bucket
    raise ValueError(
        "$GOOGLE_CLOUD_BUCKET_NAME is undefined. Run `export GOOGLE_CLOUD_BUCKET_NAME=<bucket>` "
        "with a Cloud Storage bucket (create one with `gcloud storage buckets create "
        "--location=us-central1 gs://<bucket>`)."
    )
