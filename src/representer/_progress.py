"""One progress-bar switch for every long step of the library and the CLI.

Long steps (feature extraction over many points, full-model fits, checkpoint passes, training) take
``progress: bool | None``: ``True`` shows a bar, ``False`` hides it, ``None`` (the default) shows it
only when standard error is a terminal, so notebooks and terminals see progress and logs, tests and
pipes stay quiet. Bars are tqdm's (``tqdm.auto``: a widget in Jupyter, text elsewhere).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(progress: bool | None) -> bool:
    """Resolve a ``progress`` switch: ``None`` means "when standard error is a terminal"."""
    if progress is None:
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    return bool(progress)


def progress_bar(iterable: Iterable[T], *, desc: str, total: int | None = None, progress: bool | None = None,
                 leave: bool = False) -> Iterator[T]:
    """Iterate over ``iterable`` with a bar labelled ``desc`` when :func:`progress_enabled` says so."""
    if not progress_enabled(progress):
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
