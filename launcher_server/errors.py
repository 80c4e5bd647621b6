"""Errors raised inside the daemon, each mapped to one gRPC status code by the service."""

from __future__ import annotations

import grpc


class LauncherError(Exception):
    """Base class; `code` is the gRPC status code the client receives with the message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgumentError(LauncherError):
    """The request is malformed. The message starts with the offending field's path."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class NotFoundError(LauncherError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(LauncherError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(LauncherError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class StoreVersionError(LauncherError):
    """The database was written by a newer daemon than this one."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRangeError(LauncherError):
    """A position beyond what exists (e.g. a resume point after the last event)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnavailableError(LauncherError):
    """The daemon cannot serve the call now (it is stopping); the client may retry."""

    code = grpc.StatusCode.UNAVAILABLE
