"""A sweep's work units, sorted, filtered and paged; its timeline and status-by-parameter chart.

The daemon lists work units in id order only, so the dashboard sorts and filters here and sends
the browser one page at a time (a 5,000-unit sweep is never one page).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from xmanager.launcher.v1 import launcher_pb2 as pb
from xmanager.ui import rows
from xmanager.ui.rows import Scalar

MAX_PAGE_SIZE = 500
# Columns every sweep has; any other sort key is a hyperparameter.
FIXED_COLUMNS = ("id", "state", "exit_code", "created", "start", "end")
# Numeric parameters with more distinct values than this are binned in the chart.
_CHART_BUCKETS = 12


class QueryError(ValueError):
    """A bad sort, filter or page parameter; the message names it."""


@dataclasses.dataclass(frozen=True)
class Query:
    """Which rows of a sweep to show."""

    sort: str = "id"
    descending: bool = False
    # Column -> filter text: "SUCCEEDED", "0.1", ">0.01", "<=5", "!=3", or a substring.
    filters: tuple[tuple[str, str], ...] = ()
    offset: int = 0
    limit: int = 100


@dataclasses.dataclass
class Page:
    total: int
    matched: int
    rows: list[dict[str, Any]]
    columns: list[str]


def _value(unit: pb.WorkUnit, params: dict[str, Scalar], column: str) -> Scalar:
    if column == "id":
        return unit.work_unit_id
    if column == "state":
        return rows.state_name(unit.status.state)
    if column == "exit_code":
        return unit.status.exit_code if unit.status.has_exit_code else None
    if column == "created":
        return rows.seconds(unit.create_time)
    if column == "start":
        return rows.seconds(unit.status.start_time)
    if column == "end":
        return rows.seconds(unit.status.end_time)
    return params.get(column)


def _sort_key(value: Scalar) -> tuple[int, float, str]:
    # Missing values last, numbers before text, each in its natural order.
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, bool):
        return (0, float(value), "")
    if isinstance(value, int | float):
        return (0, float(value), "") if not math.isnan(value) else (1, 0.0, "nan")
    return (1, 0.0, str(value))


def _matcher(column: str, text: str) -> Any:
    text = text.strip()
    for op in ("<=", ">=", "!=", "<", ">", "="):
        if text.startswith(op):
            operand = text[len(op) :].strip()
            try:
                number = float(operand)
            except ValueError:
                if op in ("=", "!="):
                    return lambda v: (str(v) == operand) == (op == "=")
                raise QueryError(
                    f"filter on {column!r}: {text!r} compares with {operand!r}, which is not a "
                    "number; write a number after < > <= >=, or plain text to match"
                ) from None
            return _numeric(op, number)
    needle = text.lower()
    return lambda v: v is not None and needle in _display(v).lower()


def _numeric(op: str, number: float) -> Any:
    def match(value: Scalar) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return op == "!="
        return {
            "<": value < number,
            ">": value > number,
            "<=": value <= number,
            ">=": value >= number,
            "=": value == number,
            "!=": value != number,
        }[op]

    return match


def _display(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parameter_names(parsed: Sequence[dict[str, Scalar]]) -> list[str]:
    """Every hyperparameter of the sweep, in first-seen order."""
    names: dict[str, None] = {}
    for params in parsed:
        for name in params:
            names.setdefault(name, None)
    return list(names)


def is_plain(query: Query) -> bool:
    """Whether the query is the first page in id order, unfiltered (the daemon's own order)."""
    return query.sort == "id" and not query.descending and not query.filters and not query.offset


def page(
    units: Sequence[pb.WorkUnit],
    query: Query,
    parsed: Sequence[dict[str, Scalar]] | None = None,
    *,
    total: int | None = None,
) -> Page:
    """The rows `query` asks for; `parsed` are the units' hyperparameters when known."""
    if not 1 <= query.limit <= MAX_PAGE_SIZE:
        raise QueryError(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {query.limit}")
    if query.offset < 0:
        raise QueryError(f"offset must not be negative, not {query.offset}")
    if parsed is None:
        parsed = [rows.hyperparameters(unit.args_json) for unit in units]
    columns = parameter_names(parsed)
    known = set(columns) | set(FIXED_COLUMNS)
    for column in [query.sort, *(name for name, _ in query.filters)]:
        if column not in known:
            raise QueryError(
                f"no column {column!r} in this sweep; its columns are "
                f"{', '.join([*FIXED_COLUMNS, *columns])}"
            )
    selected = list(zip(units, parsed, strict=True))
    for column, text in query.filters:
        if text.strip():
            match = _matcher(column, text)
            selected = [(u, p) for u, p in selected if match(_value(u, p, column))]
    if query.sort != "id" or query.descending:
        # Missing values stay last whichever the direction.
        present = [(u, p) for u, p in selected if _value(u, p, query.sort) is not None]
        missing = [(u, p) for u, p in selected if _value(u, p, query.sort) is None]
        present.sort(
            key=lambda up: _sort_key(_value(up[0], up[1], query.sort)), reverse=query.descending
        )
        selected = present + missing
    window = selected[query.offset : query.offset + query.limit]
    return Page(
        total=len(units) if total is None else total,
        matched=len(selected),
        rows=[rows.unit_row(u, p) for u, p in window],
        columns=columns,
    )


def timeline(units: Sequence[pb.WorkUnit]) -> dict[str, Any]:
    """One bar per job: [work unit, job, queued, started, ended, final state], seconds from t0."""
    bars: list[list[Any]] = []
    times = [t for u in units if (t := rows.seconds(u.create_time)) is not None]
    t0 = min(times) if times else 0.0

    def rel(value: float | None) -> float | None:
        return None if value is None else round(value - t0, 3)

    for unit in units:
        queued = rel(rows.seconds(unit.create_time))
        for job in unit.jobs:
            status = job.status
            bars.append(
                [
                    unit.work_unit_id,
                    job.name,
                    queued,
                    rel(rows.seconds(status.start_time)),
                    rel(rows.seconds(status.end_time)),
                    rows.state_name(status.state),
                ]
            )
    return {"t0": t0, "bars": bars}


def status_by_parameter(
    units: Sequence[pb.WorkUnit],
    parameter: str,
    parsed: Sequence[dict[str, Scalar]] | None = None,
) -> dict[str, Any]:
    """Final states counted per value (or value range) of one hyperparameter."""
    if parsed is None:
        parsed = [rows.hyperparameters(u.args_json) for u in units]
    values = [(params.get(parameter), u) for params, u in zip(parsed, units, strict=True)]
    if all(v is None for v, _ in values):
        raise QueryError(f"no work unit of this sweep has a hyperparameter {parameter!r}")
    numbers = sorted(
        {v for v, _ in values if isinstance(v, int | float) and not isinstance(v, bool)}
    )
    binned = len(numbers) > _CHART_BUCKETS and len(numbers) == len(
        {v for v, _ in values if v is not None}
    )
    counts: dict[str, Counter[str]] = {}
    order: list[str] = []
    for value, unit in values:
        label = _bucket(value, numbers) if binned else _display(value) or "(none)"
        if label not in counts:
            counts[label] = Counter()
            order.append(label)
        counts[label][rows.state_name(unit.status.state)] += 1
    if binned:
        order.sort(key=lambda label: float(label.split(" ")[0]) if label != "(none)" else math.inf)
    elif numbers and len(numbers) == len(order):
        order.sort(key=float)
    else:
        order.sort()
    return {
        "parameter": parameter,
        "binned": binned,
        "buckets": [{"value": label, "counts": dict(counts[label])} for label in order],
    }


def _bucket(value: Scalar, numbers: list[float]) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "(none)"
    low, high = numbers[0], numbers[-1]
    width = (high - low) / _CHART_BUCKETS or 1.0
    index = min(int((value - low) / width), _CHART_BUCKETS - 1)
    start = low + index * width
    return f"{start:.4g} to {start + width:.4g}"
