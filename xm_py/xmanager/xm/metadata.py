"""Annotations (title, tags, notes) of experiments and their units."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def _check_str(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}.")
    return value


class ContextAnnotations:
    """Title, tags and notes, kept in memory.

    `on_change`, when given, is called after every change; a client uses it to persist them.
    """

    def __init__(
        self,
        title: str = "",
        tags: Iterable[str] = (),
        notes: str = "",
        on_change: Callable[[ContextAnnotations], None] | None = None,
    ) -> None:
        self._title = _check_str("title", title)
        self._tags: list[str] = []
        for tag in tags:
            self._add_tag(tag)
        self._notes = _check_str("notes", notes)
        self.on_change = on_change

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def _add_tag(self, tag: object) -> bool:
        tag = _check_str("A tag", tag)
        if not tag or tag in self._tags:
            return False
        self._tags.append(tag)
        return True

    @property
    def title(self) -> str:
        return self._title

    @title.setter
    def title(self, title: str) -> None:
        self.set_title(title)

    def set_title(self, title: str) -> None:
        self._title = _check_str("title", title)
        self._changed()

    @property
    def tags(self) -> list[str]:
        """The tags in the order added (a copy: change them with add_tags/remove_tags)."""
        return list(self._tags)

    def add_tags(self, *tags: str) -> None:
        """Adds tags not present yet; empty tags are ignored."""
        added = [tag for tag in tags if self._add_tag(tag)]
        if added:
            self._changed()

    def remove_tags(self, *tags: str) -> None:
        """Removes the given tags; absent ones are ignored."""
        remaining = [tag for tag in self._tags if tag not in tags]
        if remaining != self._tags:
            self._tags = remaining
            self._changed()

    @property
    def notes(self) -> str:
        return self._notes

    @notes.setter
    def notes(self, notes: str) -> None:
        self.set_notes(notes)

    def set_notes(self, notes: str) -> None:
        self._notes = _check_str("notes", notes)
        self._changed()

    def __repr__(self) -> str:
        return (
            f"xm.ContextAnnotations(title={self._title!r}, tags={self._tags!r}, "
            f"notes={self._notes!r})"
        )


class MetadataContext:
    """Metadata of an experiment or experiment unit."""

    def __init__(self, *, creator: str = "", annotations: ContextAnnotations | None = None) -> None:
        self._creator = _check_str("creator", creator)
        self._annotations = annotations if annotations is not None else ContextAnnotations()

    @property
    def creator(self) -> str:
        return self._creator

    @property
    def annotations(self) -> ContextAnnotations:
        return self._annotations
