"""Limits on everything a request may carry, checked for every field of every message.

One walk over the request, driven by the proto descriptors, so a field added to the contract is
limited without anyone remembering to: every string must be valid UTF-8 without NUL characters
(PostgreSQL refuses NUL in text, and one refused write must never reach the recorder) and at
most its documented length; every repeated field at most its documented count; every id in the
range the store can number. Lengths are in characters (code points).

The limits are documented in docs/daemon.md ("Limits").
"""

from __future__ import annotations

import math

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message

from launcher_server.errors import InvalidArgumentError

# Ids (experiments, work units, event sequences, log offsets) are at most this: 2^53 keeps them
# exact in every JSON client, and id + 1 never overflows the store's 64-bit integers.
MAX_ID = 1 << 53
# The longest grace period a cancel may ask for (and the daemon's default may be): one day.
MAX_GRACE_SECONDS = 24 * 60 * 60

# Any string field not named below.
DEFAULT_MAX_CHARS = 4096
# Free text that may legitimately be long: notes, arguments, environment values, args_json.
LONG_TEXT_CHARS = 1 << 20
# By field name (the same name means the same thing everywhere in the contract).
MAX_CHARS: dict[str, int] = {
    "title": 1000,
    "title_contains": 1000,
    "tags": 200,
    "creator": 256,
    "source_revision": 1024,
    "launch_script_sha256": 64,
    "request_id": 200,
    "identity": 1000,
    "job_name": 63,
    "name": 255,
    "page_token": 64,
    "update_mask": 64,
    "reason": 4096,
    "notes": LONG_TEXT_CHARS,
    "args_json": LONG_TEXT_CHARS,
    "args": LONG_TEXT_CHARS,
    "env": LONG_TEXT_CHARS,
}
# Any repeated field or map not named below.
DEFAULT_MAX_ITEMS = 1000
MAX_ITEMS: dict[str, int] = {
    "tags": 100,
    "args": 10_000,
    "env": 10_000,
    "jobs": 1000,
    "requests": 10_000,
}
# A list response stops adding items past this many bytes (at least one item is always sent).
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


def check_request(message: _message.Message, path: str = "") -> None:
    """Raises InvalidArgumentError naming the first field beyond its limits."""
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            _check_map(field, value, name)
        elif field.is_repeated:
            _check_count(field.name, len(value), name)
            for i, item in enumerate(value):
                _check_value(field, item, f"{name}[{i}]")
        else:
            _check_value(field, value, name)


def _check_map(field: _descriptor.FieldDescriptor, value: object, name: str) -> None:
    items = dict(value)  # type: ignore[call-overload]
    _check_count(field.name, len(items), name)
    entry_type = field.message_type
    assert entry_type is not None
    key_field = entry_type.fields_by_name["key"]
    value_field = entry_type.fields_by_name["value"]
    for key, item in items.items():
        entry = f"{name}[{key!r}]"
        if key_field.type == key_field.TYPE_STRING:
            _check_text(key, entry, DEFAULT_MAX_CHARS)
        _check_value(value_field, item, entry, limit_name=field.name)


def _check_value(
    field: _descriptor.FieldDescriptor, value: object, name: str, limit_name: str = ""
) -> None:
    if field.type == field.TYPE_STRING:
        assert isinstance(value, str)
        _check_text(value, name, MAX_CHARS.get(limit_name or field.name, DEFAULT_MAX_CHARS))
    elif field.type == field.TYPE_BYTES:
        assert isinstance(value, bytes)
        if len(value) > DEFAULT_MAX_CHARS:
            raise InvalidArgumentError(name, f"is {len(value)} bytes; at most {DEFAULT_MAX_CHARS}")
    elif field.cpp_type in (field.CPPTYPE_INT64, field.CPPTYPE_UINT64):
        assert isinstance(value, int)
        is_id = field.name.endswith(("_id", "_ids")) or field.name == "after_sequence"
        low = 0 if is_id else -MAX_ID
        if not low <= value <= MAX_ID:
            raise InvalidArgumentError(name, _range_problem(low, value))
    elif field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        assert isinstance(value, float | int)
        if not math.isfinite(value):
            raise InvalidArgumentError(name, f"is {value}; it must be a finite number")
    elif field.message_type is not None:
        assert isinstance(value, _message.Message)
        check_request(value, name)


def _check_count(field_name: str, count: int, name: str) -> None:
    limit = MAX_ITEMS.get(field_name, DEFAULT_MAX_ITEMS)
    if count > limit:
        raise InvalidArgumentError(name, f"has {count} items; at most {limit}")


def _check_text(value: str, name: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgumentError(name, f"is {len(value)} characters long; at most {limit}")
    if "\x00" in value:
        raise InvalidArgumentError(name, "contains a NUL character (U+0000); remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(name, "is not valid UTF-8 (a lone surrogate)") from None


def check_id(value: int, field: str, *, zero_allowed: bool = False) -> None:
    """An id the store can hold: positive (or 0 for "unset" where allowed), at most MAX_ID."""
    low = 0 if zero_allowed else 1
    if not low <= value <= MAX_ID:
        raise InvalidArgumentError(field, _range_problem(low, value))


def _range_problem(low: int, value: int) -> str:
    wanted = {1: "must be positive", 0: "must not be negative"}.get(low, f"must be at least {low}")
    return f"{wanted} and at most {MAX_ID} (2^53), got {value}"


def check_grace(seconds: float, field: str) -> None:
    """A grace period: 0 (the daemon's default) up to MAX_GRACE_SECONDS."""
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_GRACE_SECONDS):
        raise InvalidArgumentError(
            field, f"must be between 0 and {MAX_GRACE_SECONDS} seconds (one day), got {seconds}"
        )


def clean_text(value: str, limit: int = DEFAULT_MAX_CHARS) -> str:
    """Text the daemon itself records (reasons from backends): storable whatever it holds."""
    value = value.replace("\x00", "\N{REPLACEMENT CHARACTER}")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if len(value) <= limit else value[: limit - 1] + "…"
