"""Progress of long work (insights, training): each stage reports `(stage, done, total)`,
total 0 when unknown. Services take a `Progress`; the CLI shows one rich bar per stage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as Bars

Progress = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A `Progress` that shows nothing (the admin routes, tests)."""
    return None


@contextlib.contextmanager
def stage_bars(console: Console) -> Iterator[Progress]:
    """A `Progress` drawing one bar per stage on `console`, cleared when the work is done."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Bars(*columns, console=console, transient=True) as bars:
        yield _StageBars(bars)


class _StageBars:
    def __init__(self, bars: Bars) -> None:
        self._bars = bars
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._bars.add_task(stage, total=total or None)
        self._bars.update(task, completed=done, total=total or None)
