"""Progress bars for long work (indexing, evaluation, training), shown on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pixquery.indexing import ProgressFn

_LABELS = {"hash": "Reading new files", "embed": "Embedding images"}


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[ProgressFn | None]:
    """Yield a progress(stage, done, total) callback that drives a rich progress bar with rate and ETA."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class RateColumn(TextColumn):
        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            return super().render(task) if speed is None else f"{speed:.1f} images/s"

    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(""),
        TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    ) as bar:

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_LABELS.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update
