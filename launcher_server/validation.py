"""Generic validation of requests, before anything is written.

Each check raises InvalidArgumentError naming the field path (as a client would write it, e.g.
`jobs[1].env["1BAD"]`) and saying what is allowed. What only a backend can judge (does the
binary exist on this machine, is this port or machine type valid) is checked by the job's
backend (`Backend.check`), also before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from google.protobuf import message as _message

from launcher_server import limits
from launcher_server.errors import InvalidArgumentError
from xmanager.launcher import contract
from xmanager.launcher.v1 import launcher_pb2 as pb

JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")

MAX_JOBS_PER_WORK_UNIT = 1000
MAX_ARGS = 10_000
MAX_ENV = 10_000
MAX_STRING = 1 << 20  # a single argument, env value or notes: 1 MiB
MAX_TITLE = 1000
MAX_TAGS = 100
MAX_REQUEST_ID = 200
UPDATABLE_EXPERIMENT_FIELDS = frozenset({"title", "tags", "notes"})


def _require(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise InvalidArgumentError(field, problem)


def check_enums(message: _message.Message, path: str = "") -> None:
    """Rejects enum values this daemon does not know (proto3 keeps unknown numbers)."""
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.enum_type is not None:
            known = field.enum_type.values_by_number
            for v in value if field.is_repeated else [value]:
                _require(
                    v in known,
                    name,
                    f"unknown {field.enum_type.name} value {v}; this daemon knows "
                    f"{sorted(known)} (upgrade the daemon?)",
                )
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                continue
            if field.is_repeated:
                for i, item in enumerate(value):
                    check_enums(item, f"{name}[{i}]")
            else:
                check_enums(value, name)


def _check_text(value: str, field: str, limit: int = MAX_STRING) -> None:
    _require(len(value) <= limit, field, f"is {len(value)} characters long; at most {limit}")
    _require("\x00" not in value, field, "contains a NUL character")


def _check_tags(tags: Iterable[str], field: str) -> None:
    tags = list(tags)
    _require(len(tags) <= MAX_TAGS, field, f"has {len(tags)} tags; at most {MAX_TAGS}")
    for i, tag in enumerate(tags):
        _require(bool(tag.strip()), f"{field}[{i}]", "is empty")
        _check_text(tag, f"{field}[{i}]", 200)


def _check_request_id(request_id: str, *, required: bool) -> None:
    if required:
        _require(bool(request_id), "request_id", "is required (a unique id, e.g. a UUID)")
    _check_text(request_id, "request_id", MAX_REQUEST_ID)


def validate_create_experiment(request: pb.CreateExperimentRequest) -> None:
    check_enums(request)
    experiment = request.experiment
    _require(bool(experiment.title.strip()), "experiment.title", "is empty; give it a title")
    _check_text(experiment.title, "experiment.title", MAX_TITLE)
    _check_tags(experiment.tags, "experiment.tags")
    _check_text(experiment.notes, "experiment.notes")
    if experiment.launch_script_sha256:
        _require(
            SHA256_HEX.fullmatch(experiment.launch_script_sha256) is not None,
            "experiment.launch_script_sha256",
            "must be 64 lowercase hex digits",
        )
    _check_request_id(request.request_id, required=False)


def validate_update_experiment(request: pb.UpdateExperimentRequest) -> None:
    _require(request.experiment_id > 0, "experiment_id", "must be positive")
    _require(
        bool(request.update_mask),
        "update_mask",
        f"is empty; name the fields to change: {sorted(UPDATABLE_EXPERIMENT_FIELDS)}",
    )
    for i, name in enumerate(request.update_mask):
        _require(
            name in UPDATABLE_EXPERIMENT_FIELDS,
            f"update_mask[{i}]",
            f"{name!r} cannot be updated; only {sorted(UPDATABLE_EXPERIMENT_FIELDS)}",
        )
    if "title" in request.update_mask:
        _require(bool(request.title.strip()), "title", "is empty")
        _check_text(request.title, "title", MAX_TITLE)
    _check_tags(request.tags, "tags")
    _check_text(request.notes, "notes")


def validate_add_work_unit(request: pb.AddWorkUnitRequest) -> None:
    """Checks a work unit completely; raises on the first problem found."""
    limits.check_request(request)
    check_enums(request)
    _require(request.experiment_id > 0, "experiment_id", "must be positive")
    _check_request_id(request.request_id, required=True)
    _check_text(request.identity, "identity", 1000)
    _check_text(request.args_json, "args_json")
    if request.HasField("launch_context"):
        _validate_launch_context(request.launch_context)
    if request.launch_context_digest:
        _require(
            SHA256_HEX.fullmatch(request.launch_context_digest) is not None,
            "launch_context_digest",
            "must be 64 lowercase hex digits (the sha256 of the launch context)",
        )
    _require(len(request.jobs) > 0, "jobs", "is empty; a work unit needs at least one job")
    _require(
        len(request.jobs) <= MAX_JOBS_PER_WORK_UNIT,
        "jobs",
        f"has {len(request.jobs)} jobs; at most {MAX_JOBS_PER_WORK_UNIT}",
    )
    seen: dict[str, int] = {}
    for i, job in enumerate(request.jobs):
        field = f"jobs[{i}]"
        _require(bool(job.name), f"{field}.name", "is empty")
        _require(
            JOB_NAME.fullmatch(job.name) is not None,
            f"{field}.name",
            f"{job.name!r} is not a valid job name: use letters, digits, '_', '.', '-' "
            "(first a letter, digit or '_'), at most 63 characters",
        )
        _require(
            job.name not in seen,
            f"{field}.name",
            f"duplicate job name {job.name!r} (also jobs[{seen.get(job.name)}])",
        )
        seen[job.name] = i
        _validate_job(job, field)


def _validate_launch_context(context: pb.LaunchContext) -> None:
    # Names only in messages: the values may be secrets.
    _require(
        context.working_directory.startswith("/"),
        "launch_context.working_directory",
        "must be an absolute path",
    )
    _check_text(context.working_directory, "launch_context.working_directory", 4096)
    _require(
        len(context.env) <= MAX_ENV,
        "launch_context.env",
        f"has {len(context.env)} variables; at most {MAX_ENV}",
    )
    for name, value in context.env.items():
        field = f"launch_context.env[{name[:100]!r}]"
        _require(bool(name) and "=" not in name, field, "is not a valid variable name")
        _check_text(name, field, 1000)
        _require("\x00" not in value, field, "contains a NUL character")
        _require(len(value) <= MAX_STRING, field, f"is longer than {MAX_STRING} characters")


def _validate_job(job: pb.Job, field: str) -> None:
    _require(
        len(job.args) <= MAX_ARGS, f"{field}.args", f"has {len(job.args)} items; at most {MAX_ARGS}"
    )
    for i, arg in enumerate(job.args):
        _check_text(arg, f"{field}.args[{i}]")
    for name, value in job.env.items():
        _require(
            ENV_NAME.fullmatch(name) is not None,
            f"{field}.env[{name!r}]",
            "is not a valid environment variable name: use [A-Za-z_][A-Za-z0-9_]*",
        )
        reserved = contract.reserved_env_error(name)
        _require(reserved is None, f"{field}.env[{name!r}]", reserved or "")
        _check_text(value, f"{field}.env[{name!r}]")
    _validate_artifact(job.artifact, f"{field}.artifact")
    _require(
        job.executor.WhichOneof("kind") is not None,
        f"{field}.executor",
        "is not set; choose local, vertex or kubernetes",
    )
    requirements = job.requirements
    _require(requirements.cpu >= 0, f"{field}.requirements.cpu", "is negative")
    _require(requirements.memory_bytes >= 0, f"{field}.requirements.memory_bytes", "is negative")
    _require(requirements.replicas >= 0, f"{field}.requirements.replicas", "is negative")
    if requirements.HasField("accelerator"):
        _require(
            requirements.accelerator.count > 0,
            f"{field}.requirements.accelerator.count",
            "must be positive",
        )


def _validate_artifact(artifact: pb.Artifact, field: str) -> None:
    kind = artifact.WhichOneof("kind")
    _require(kind is not None, field, "is not set; give a local_binary or an oci_image")
    if kind == "local_binary":
        binary = artifact.local_binary
        path = binary.path
        _require(bool(path), f"{field}.local_binary.path", "is empty")
        if binary.sha256:
            _require(
                SHA256_HEX.fullmatch(binary.sha256) is not None,
                f"{field}.local_binary.sha256",
                "must be 64 lowercase hex digits",
            )
    else:
        image = artifact.oci_image
        _require(
            image.WhichOneof("source") is not None,
            f"{field}.oci_image",
            "sets neither tarball_path nor reference",
        )
        if image.digest:
            _require(
                DIGEST.fullmatch(image.digest) is not None,
                f"{field}.oci_image.digest",
                "must look like sha256:<64 hex digits>",
            )
