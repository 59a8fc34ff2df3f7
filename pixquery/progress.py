"""Progress reporting: the callback type every long task takes, and a rich progress bar that drives it.

A task calls `progress(stage, done, total)`; it never draws anything itself. The faces decide how to show it: the
CLI draws bars on stderr (`rich_progress`), the server records the latest figures, the Python API shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

ProgressFn = Callable[[str, int, int], None]
"""progress(stage, done, total): called as work advances. `stage` is a key of `STAGES` or a free label."""

STAGES: dict[str, tuple[str, str]] = {
    "hash": ("Reading new files", "files"),
    "embed": ("Embedding images", "images"),
    "texts": ("Embedding texts", "texts"),
    "vocabulary": ("Embedding the vocabulary", "words"),
    "bank": ("Embedding the query bank", "texts"),
    "labels": ("Embedding labels", "prompts"),
    "fingerprints": ("Fingerprinting images", "images"),
    "calibrate": ("Calibrating on your images", "images"),
    "score": ("Scoring images", "images"),
}
"""stage -> (what the bar says, what it counts): a bar's rate reads "words/s" while words are embedded, never
"images/s". A stage missing here counts "items"."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The callback used when nobody watches."""


@contextmanager
def rich_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A progress callback drawing one rich bar per stage on stderr, with a rate in the stage's own unit and ETA."""
    if not enabled:
        yield no_progress
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class RateColumn(TextColumn):
        def render(self, task):  # type: ignore[override]
            speed = task.finished_speed or task.speed
            unit = task.fields.get("unit", "items")
            return super().render(task) if speed is None else f"{speed:.1f} {unit}/s"

    tasks: dict[str, int] = {}
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(""),
        TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
    )

    def update(stage: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()  # on the first report only: work that fails before it prints no empty bar
        if stage not in tasks:
            label, unit = STAGES.get(stage, (stage, "items"))
            tasks[stage] = bar.add_task(label, total=total, unit=unit)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
