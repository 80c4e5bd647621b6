"""Hypothesis strategies for the launcher contract, derived from its proto descriptors.

Every field of every request message gets values a hostile or broken client could send:
boundary integers, unknown enum numbers, NUL characters, long and odd text, NaN, deep nesting,
and sometimes the serialized message with a few bytes changed. Values that would be valid are
common too (real executables, small ids), so requests also get past validation and reach the
store and the scheduler.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from hypothesis import strategies as st

from xmanager.launcher.v1 import launcher_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Launcher"]
F = _descriptor.FieldDescriptor

_INT64_EDGES = [0, 1, 2, 3, -1, -5, (1 << 31) - 1, -(1 << 31), 1 << 53, (1 << 53) + 1]
_INT64_EDGES += [(1 << 63) - 1, -(1 << 63), 2_147_484]  # grace beyond 24.8 days in seconds
_INT32_EDGES = [0, 1, 2, -1, 86_400, 86_401, (1 << 31) - 1, -(1 << 31), 3_000_000]
_TEXT_EDGES = [
    "",
    "main",
    "\x00",
    "a\x00b",
    "%",
    "_",
    "50%_off",
    "../../etc/passwd",
    "/bin/true",
    "/var/run/docker.sock",
    "sha256:" + "0" * 64,
    "0" * 64,
    "title",
    "tags",
    "notes",
    "\u202e\ufeff",
    "ünïcødé ✓",
    "x" * 5000,
    "y" * 70_000,
    "$(reboot)",
]
_ALPHABET = st.characters(exclude_categories=["Cs"])  # surrogates cannot be serialized


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(_TEXT_EDGES),
        st.text(_ALPHABET, max_size=40),
        st.text(st.sampled_from("ab_%\x00/. -"), max_size=10),
    )


def _integers(field: F) -> st.SearchStrategy[int]:
    if field.cpp_type in (F.CPPTYPE_INT32, F.CPPTYPE_UINT32):
        low, high, edges = -(1 << 31), (1 << 31) - 1, _INT32_EDGES
    else:
        low, high, edges = -(1 << 63), (1 << 63) - 1, _INT64_EDGES
    if field.cpp_type in (F.CPPTYPE_UINT32, F.CPPTYPE_UINT64):
        low = 0
        edges = [e for e in edges if e >= 0]
    return st.one_of(
        st.sampled_from([e for e in edges if low <= e <= high]),
        st.integers(0, 10),
        st.integers(low, high),
    )


_PLAUSIBLE_TEXT = ["", "main", "worker", "/bin/true", "title", "tags", "notes", "x1", "a-b"]


def _plausible(field: F) -> st.SearchStrategy[Any]:
    """Values a correct client sends: small ids, known enums, short names."""
    if field.type == F.TYPE_STRING:
        return st.sampled_from(_PLAUSIBLE_TEXT)
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=4)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.sampled_from([0.0, 0.5, 1.0, 2.0])
    if field.type == F.TYPE_ENUM:
        return st.sampled_from(list(_enum(field).values_by_number))
    return st.integers(0, 6)


def _scalar(field: F, plausible: bool = False) -> st.SearchStrategy[Any]:
    if plausible:
        return _plausible(field)
    if field.type == F.TYPE_STRING:
        return _text()
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.one_of(
            st.sampled_from([0.0, -1.0, 1e308, math.inf, -math.inf, math.nan, 0.5]),
            st.floats(allow_nan=True, allow_infinity=True, width=32),
        )
    if field.type == F.TYPE_ENUM:
        known = list(_enum(field).values_by_number)
        return st.one_of(st.sampled_from(known), st.sampled_from([-1, 99, (1 << 31) - 1]))
    return _integers(field)


def messages(
    descriptor: _descriptor.Descriptor, depth: int = 0, plausible: bool = False
) -> st.SearchStrategy[_message.Message]:
    """Messages of this type with any subset of fields set to hostile values, or (`plausible`)
    to values a correct client sends, so that requests also get past validation."""
    message_class = _class(descriptor)
    if descriptor.full_name == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: message_class(seconds=s, nanos=n),
            st.integers(-62135596800, 253402300799),
            st.integers(0, 999_999_999),
        )
    if depth > 4:
        return st.just(message_class())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        values = _field_values(field, depth, plausible)
        # A correct client sets few fields; a hostile one any.
        fields[field.name] = (
            st.one_of(st.none(), st.none(), st.none(), values)
            if plausible
            else st.one_of(st.none(), values)
        )
    return st.fixed_dictionaries(fields).map(lambda values: _build(message_class, values))


def _field_values(field: F, depth: int, plausible: bool) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = field.message_type.fields_by_name["key"]
        value = field.message_type.fields_by_name["value"]
        return st.dictionaries(
            _scalar(key, plausible), _single(value, depth + 1, plausible), max_size=3
        )
    if field.is_repeated:
        return st.lists(_single(field, depth + 1, plausible), max_size=3)
    return _single(field, depth + 1, plausible)


def _single(field: F, depth: int, plausible: bool) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return messages(field.message_type, depth, plausible)
    return _scalar(field, plausible)


def _build(message_class: type[_message.Message], values: dict[str, Any]) -> _message.Message:
    message = message_class()
    for name, value in values.items():
        if value is None:
            continue
        field = message.DESCRIPTOR.fields_by_name[name]
        # A oneof keeps only its last member set, as on the wire.
        target = getattr(message, name) if field.is_repeated or field.message_type else None
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, _message.Message):
                    target[key].CopyFrom(item)  # type: ignore[index]
                else:
                    target[key] = item  # type: ignore[index]
        elif field.is_repeated:
            target.extend(value)  # type: ignore[union-attr]
        elif field.message_type is not None:
            target.CopyFrom(value)  # type: ignore[union-attr]
        else:
            setattr(message, name, value)
    return message


def _enum(field: F) -> _descriptor.EnumDescriptor:
    assert field.enum_type is not None
    return field.enum_type


def _class(descriptor: _descriptor.Descriptor) -> type[_message.Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


@st.composite
def wire_bytes(draw: st.DrawFn, descriptor: _descriptor.Descriptor) -> bytes:
    """A message's serialization, sometimes with a few bytes changed or cut."""
    plausible = draw(st.booleans())
    data = draw(messages(descriptor, plausible=plausible)).SerializeToString()
    how = draw(st.sampled_from(["as is", "as is", "as is", "flip", "cut", "garbage"]))
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif how == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "garbage":
        data = draw(st.binary(min_size=1, max_size=32))
    return data
