"""The list-filter language of Google Cloud APIs, as far as the emulators need it.

`term (AND term)* (OR term (AND term)*)*` where a term is `[NOT] field op value`, op one of
= != : > >= < <=, value a double-quoted string or a bare word, and `field:*` tests presence.
Fields are dotted paths looked up in a flat dict (e.g. "labels.xm-experiment", "state",
"update_time", "resource.labels.job_id"). Timestamps compare as RFC 3339 strings in UTC (with
a "Z" suffix and the same precision, as the emulators write them). Anything else is an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

_TERM = re.compile(
    r'\s*(NOT\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*(!=|>=|<=|=|:|>|<)\s*("(?:[^"\\]|\\.)*"|[^\s()"]+)\s*'
)


class FilterError(ValueError):
    """The filter does not parse; the message says where."""


@dataclasses.dataclass(frozen=True)
class Term:
    negate: bool
    field: str
    op: str
    value: str

    def matches(self, record: Mapping[str, str]) -> bool:
        present = self.field in record
        actual = record.get(self.field, "")
        if self.op == ":" and self.value == "*":
            result = present
        elif self.op == ":":
            result = self.value in actual
        elif self.op == "=":
            result = present and actual == self.value
        elif self.op == "!=":
            result = actual != self.value
        else:
            compare: dict[str, Callable[[str, str], bool]] = {
                ">": str.__gt__,
                ">=": str.__ge__,
                "<": str.__lt__,
                "<=": str.__le__,
            }
            result = present and compare[self.op](actual, self.value)
        return result != self.negate


Filter = list[list[Term]]  # OR of ANDs


def parse(text: str, fields: Callable[[str], bool]) -> Filter:
    """Parses `text`; `fields(name)` says whether a field may be filtered on."""
    groups: Filter = [[]]
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None:
            raise FilterError(f"cannot parse filter at offset {position}: {text[position:]!r}")
        negate, field, op, value = match.groups()
        if not fields(field):
            raise FilterError(f"unsupported field {field!r} in filter")
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        groups[-1].append(Term(bool(negate), field, op, value))
        position = match.end()
        connective = re.compile(r"(AND|OR)\s+").match(text, position)
        if connective is None:
            if position < len(text):
                raise FilterError(f"expected AND or OR at offset {position}: {text[position:]!r}")
            break
        if connective.group(1) == "OR":
            groups.append([])
        position = connective.end()
    return [group for group in groups if group]


def matches(parsed: Filter, record: Mapping[str, str]) -> bool:
    return not parsed or any(all(term.matches(record) for term in group) for group in parsed)
