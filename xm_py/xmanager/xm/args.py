"""Command-line arguments: `SequentialArgs`, their rendering to argv tokens, and merging.

Arguments are always rendered to a list of argv tokens that reach the program exactly, byte for
byte. No shell ever sees them, so nothing is quoted or escaped: a value with spaces, quotes, `$`
or newlines is one token with exactly those characters.

Rendering of a flag `name` by value type:
  True -> `--name`; False -> `--noname`; None -> left out (with a warning);
  list or tuple -> the flag once per element (`--name=a --name=b`; empty -> left out);
  enum member -> `--name=MEMBER_NAME`; str -> `--name=value` verbatim;
  int, float and other real numbers -> `--name=str(value)` (0.001 -> `0.001`, 1e-05 -> `1e-05`);
  os.PathLike -> `--name=os.fspath(value)`.
Positional arguments render like flag values (bools as `True`/`False`); None and lists are not
allowed as positional arguments.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from xmanager.xm import validation


class ShellSafeArg(str):
    """A str value passed to the program as-is.

    Kept for compatibility with XManager launch scripts. Since no shell is involved in starting
    jobs, every str is already passed as-is: `ShellSafeArg('$HOME')` is the five characters
    `$HOME`, not the expanded variable.
    """

    __slots__ = ()

    def __new__(cls, arg: str) -> ShellSafeArg:
        return super().__new__(cls, arg)

    @property
    def arg(self) -> str:
        """The argument (XManager's attribute)."""
        return str(self)


@dataclasses.dataclass(frozen=True)
class _PositionalItem:
    index: int


@dataclasses.dataclass(frozen=True)
class _KeywordItem:
    name: str


def render_value(value: Any) -> str:
    """Renders one scalar argument value to its token text (see the module docstring)."""
    # Enum first: a str- or int-valued enum member still renders as its name.
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if not isinstance(path, str):
            raise TypeError(f"Bytes path {value!r} cannot be rendered; use a str path.")
        return path
    # str() of a str subclass (e.g. ShellSafeArg) gives a plain str with the same characters.
    return str(value)


class SequentialArgs:
    """An ordered mix of positional arguments and keyword (flag) arguments.

    Keyword arguments keep the position at which their name first appeared; giving a name again
    (see `merge_args`) replaces the value in place. Instances are not changed after construction:
    merging builds new ones, so one instance can be shared freely.
    """

    __slots__ = ("_items", "_keywords", "_positionals")

    def __init__(self) -> None:
        self._items: list[_PositionalItem | _KeywordItem] = []
        self._positionals: list[Any] = []
        self._keywords: dict[str, Any] = {}

    def _add_positional(self, value: Any) -> None:
        validation.check_positional_arg(len(self._positionals), value)
        self._items.append(_PositionalItem(len(self._positionals)))
        self._positionals.append(value)

    def _add_keyword(self, name: str, value: Any) -> None:
        validation.validate_flag_name(name)
        validation.check_arg_value(name, value)
        if name not in self._keywords:
            self._items.append(_KeywordItem(name))
        # Lists are copied so that later changes to the caller's list do not leak in.
        self._keywords[name] = list(value) if isinstance(value, list) else value

    def _extend(self, other: SequentialArgs) -> None:
        for item in other._items:
            if isinstance(item, _PositionalItem):
                self._add_positional(other._positionals[item.index])
            else:
                self._add_keyword(item.name, other._keywords[item.name])

    @classmethod
    def from_collection(cls, collection: UserArgs | None) -> SequentialArgs:
        """Builds SequentialArgs from a mapping (flags), a sequence (positionals) or None.

        An existing SequentialArgs is returned unchanged (instances are never mutated).

        Raises:
          TypeError: for a str or bytes (a likely mistake for a list of tokens) or any other
            unsupported collection, key or value type.
          ValueError: for a flag name that cannot be rendered or a value with a NUL character.
        """
        if collection is None:
            return cls()
        if isinstance(collection, SequentialArgs):
            return collection
        if isinstance(collection, str | bytes | bytearray):
            raise TypeError(
                f"Arguments must be a list of tokens or a mapping of flags, not a "
                f"{type(collection).__name__}: {collection!r}. Did you mean [{collection!r}]? "
                "Nothing is split on spaces because no shell is involved."
            )
        result = cls()
        if isinstance(collection, Mapping):
            for name, value in collection.items():
                result._add_keyword(name, value)
        elif isinstance(collection, Sequence):
            for value in collection:
                result._add_positional(value)
        else:
            raise TypeError(
                f"Arguments must be a mapping (flags), a list or tuple (positional arguments) or "
                f"xm.SequentialArgs, got {type(collection).__name__}: {collection!r}."
            )
        return result

    def to_list(self) -> list[str]:
        """Renders the arguments to argv tokens (see the module docstring for the rules)."""
        tokens: list[str] = []
        for item in self._items:
            if isinstance(item, _PositionalItem):
                tokens.append(render_value(self._positionals[item.index]))
                continue
            name = item.name
            value = self._keywords[name]
            if value is None:
                warnings.warn(
                    f"Argument {name!r} is None, so --{name} is left out of the command line.",
                    stacklevel=2,
                )
            elif isinstance(value, bool):
                tokens.append(f"--{name}" if value else f"--no{name}")
            elif isinstance(value, list | tuple):
                tokens.extend(f"--{name}={render_value(element)}" for element in value)
            else:
                tokens.append(f"--{name}={render_value(value)}")
        return tokens

    def to_dict(self, kwargs_only: bool = False) -> dict[str, Any]:
        """Returns the arguments as a dict, in order.

        Args:
          kwargs_only: only the keyword arguments. Otherwise positional arguments are included
            too, keyed by their position among positional arguments as a str ("0", "1", ...).
        """
        if kwargs_only:
            return dict(self._keywords)
        result: dict[str, Any] = {}
        for item in self._items:
            if isinstance(item, _PositionalItem):
                result[str(item.index)] = self._positionals[item.index]
            else:
                result[item.name] = self._keywords[item.name]
        return result

    def rewrite_args(self, rewrite: Callable[[str], str]) -> SequentialArgs:
        """A copy with `rewrite` applied to every str value, positional or keyword (XManager's;
        e.g. to substitute a placeholder)."""
        result = SequentialArgs()
        for key, value in self._entries():
            new_value = rewrite(value) if isinstance(value, str) else value
            if isinstance(key, int):
                result._add_positional(new_value)
            else:
                result._add_keyword(key, new_value)
        return result

    def remove_args(self, removed_args: str) -> SequentialArgs:
        """A copy without the keyword argument named `removed_args` and without positional
        arguments equal to it (XManager's)."""
        result = SequentialArgs()
        for key, value in self._entries():
            if isinstance(key, int):
                if not (isinstance(value, str) and value == removed_args):
                    result._add_positional(value)
            elif key != removed_args:
                result._add_keyword(key, value)
        return result

    def _entries(self) -> list[tuple[str | int, Any]]:
        return [
            (item.index, self._positionals[item.index])
            if isinstance(item, _PositionalItem)
            else (item.name, self._keywords[item.name])
            for item in self._items
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SequentialArgs):
            return NotImplemented
        return self._entries() == other._entries()

    __hash__ = None  # type: ignore[assignment]  # Equal by content, which is not hashable.

    def __add__(self, other: UserArgs | None) -> SequentialArgs:
        return merge_args(self, other)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        parts = [
            repr(value) if isinstance(key, int) else f"{key}={value!r}"
            for key, value in self._entries()
        ]
        return f"xm.SequentialArgs([{', '.join(parts)}])"


# What launch scripts may pass as arguments: flags as a mapping, positionals as a sequence.
UserArgs: TypeAlias = Mapping[str, Any] | Sequence[Any] | SequentialArgs


def merge_args(*args: UserArgs | None) -> SequentialArgs:
    """Merges argument collections left to right into a new SequentialArgs.

    A flag given again keeps its first position and takes the later value; positional arguments
    are appended. The inputs are not modified.
    """
    result = SequentialArgs()
    for collection in args:
        result._extend(SequentialArgs.from_collection(collection))
    return result
