"""Validation of names and values that end up in a job's command line and environment.

Every error names the offending value and says what is allowed, because these errors are read by
someone editing a launch script, not by someone debugging this library.
"""

from __future__ import annotations

import enum
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

ENV_VAR_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
JOB_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}"

_ENV_VAR_NAME_RE = re.compile(ENV_VAR_NAME_PATTERN)
_JOB_NAME_RE = re.compile(JOB_NAME_PATTERN)
# A flag name must not contain what would change how `--name=value` splits or reads.
_BAD_FLAG_CHARS_RE = re.compile(r"[=\s\x00]")

_SCALAR_TYPES_DESCRIPTION = "str, int, float, bool, an enum member or a path"


def validate_env_vars(env_vars: Mapping[str, str] | None, *, owner: str = "") -> dict[str, str]:
    """Returns a copy of `env_vars` after checking names and values.

    Args:
      env_vars: mapping of variable name to value, or None for no variables.
      owner: what the variables belong to, for error messages (e.g. "job 'train'").

    Raises:
      TypeError: not a mapping, or a name or value that is not a str.
      ValueError: a name that is not a valid variable name, or a value with a NUL character.
    """
    where = f" of {owner}" if owner else ""
    if env_vars is None:
        return {}
    if not isinstance(env_vars, Mapping):
        raise TypeError(
            f"env_vars{where} must be a mapping of str to str, got {type(env_vars).__name__}: "
            f"{env_vars!r}."
        )
    result: dict[str, str] = {}
    for name, value in env_vars.items():
        if not isinstance(name, str):
            raise TypeError(
                f"Environment variable name {name!r}{where} is a {type(name).__name__}; names must "
                f"be str matching {ENV_VAR_NAME_PATTERN}."
            )
        if not _ENV_VAR_NAME_RE.fullmatch(name):
            raise ValueError(
                f"Invalid environment variable name {name!r}{where}: names must match "
                f"{ENV_VAR_NAME_PATTERN}."
            )
        if not isinstance(value, str):
            raise TypeError(
                f"Environment variable {name!r}{where} has a {type(value).__name__} value "
                f"{value!r}; values must be str (convert it with str() first)."
            )
        if "\x00" in value:
            raise ValueError(
                f"Environment variable {name!r}{where} contains a NUL character, which no "
                "process environment can hold."
            )
        result[name] = value
    return result


def validate_job_name(name: str, *, what: str = "job name") -> str:
    """Returns `name` if it is a valid job name, else raises TypeError or ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"The {what} must be a str, got {type(name).__name__}: {name!r}.")
    if not _JOB_NAME_RE.fullmatch(name):
        raise ValueError(
            f"Invalid {what} {name!r}: job names must match {JOB_NAME_PATTERN} (letters, digits, "
            "'_', '.', '-'; 1 to 63 characters; not starting with '.' or '-')."
        )
    return name


def validate_flag_name(name: object) -> str:
    """Returns `name` if it can be rendered as `--name=value`, else raises TypeError/ValueError."""
    if not isinstance(name, str):
        raise TypeError(
            f"Argument names must be str, got {type(name).__name__}: {name!r}. Pass positional "
            "arguments as a list instead."
        )
    if not name or name.startswith("-") or _BAD_FLAG_CHARS_RE.search(name):
        raise ValueError(
            f"Invalid argument name {name!r}: it is rendered as --{name}=VALUE, so it must be "
            "non-empty, must not start with '-' and must not contain '=', whitespace or NUL. Pass "
            "tokens that are not flags as positional arguments (a list)."
        )
    return name


def is_scalar_arg(value: object) -> bool:
    """Whether `value` renders as a single command-line token."""
    if isinstance(value, bytes | bytearray):
        # Bytes have no unambiguous text form; decoding is the caller's decision.
        return False
    return isinstance(value, enum.Enum | str | numbers.Real | os.PathLike)


def check_scalar_arg(value: object, *, where: str) -> None:
    """Raises TypeError/ValueError unless `value` renders as one command-line token."""
    if not is_scalar_arg(value):
        raise TypeError(
            f"{where} has unsupported type {type(value).__name__} (value {value!r}); allowed: "
            f"{_SCALAR_TYPES_DESCRIPTION}, or for a flag also None or a list of those."
        )
    if isinstance(value, os.PathLike) and not isinstance(os.fspath(value), str):
        raise TypeError(f"{where} is a bytes path {value!r}; use a str path.")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(
            f"{where} contains a NUL character, which cannot be passed in a command line: "
            f"{value!r}."
        )


def check_arg_value(name: str, value: Any) -> None:
    """Checks the value of flag `name`: a scalar, None, or a list/tuple of scalars."""
    where = f"Argument {name!r}"
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, list | tuple):
        for index, element in enumerate(value):
            check_scalar_arg(element, where=f"Element {index} of argument {name!r}")
        return
    check_scalar_arg(value, where=where)


def check_positional_arg(index: int, value: Any) -> None:
    """Checks a positional argument: a scalar only (None or a list has no single token)."""
    check_scalar_arg(value, where=f"Positional argument {index}")
