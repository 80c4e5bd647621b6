"""A progress bar of bytes pushed (rich), on a terminal; silent otherwise."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import TaskID


class PushProgress:
    """A rich progress bar of bytes uploaded, on a terminal; nothing otherwise."""

    def __init__(self) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("push {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=console,
            )
            self.bar.start()

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task(what, total=total or 1)
        self.bar.update(self.task, completed=done if total else 1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
