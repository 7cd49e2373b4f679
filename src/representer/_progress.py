"""One progress-bar switch for every long step of the library and the CLI.

Long steps (feature extraction over many points, full-model fits, checkpoint passes, training) take
``progress: bool | None``: ``True`` shows a bar, ``False`` hides it, ``None`` (the default) shows it
only when standard error is a terminal, so notebooks and terminals see progress and logs, tests and
pipes stay quiet. Bars are tqdm's (``tqdm.auto``: a widget in Jupyter, text elsewhere).

The command line shows one spinner per step instead of bars: inside :func:`reporting`, every step
that would draw a bar (unless its ``progress`` is ``False``) reports ``(desc, done, total)`` to the
given callback, which the CLI prints beside its spinner.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
#: ``callback(desc, done, total)`` of the innermost :func:`reporting` block, if any.
Reporter = Callable[[str, int, "int | None"], None]
_reporter: ContextVar[Reporter | None] = ContextVar("representer_progress_reporter", default=None)


def progress_enabled(progress: bool | None) -> bool:
    """Resolve a ``progress`` switch: ``None`` means "when standard error is a terminal"."""
    if progress is None:
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    return bool(progress)


@contextmanager
def reporting(callback: Reporter) -> Iterator[None]:
    """Within the block, long steps report ``(desc, done, total)`` to ``callback`` instead of drawing bars."""
    token = _reporter.set(callback)
    try:
        yield
    finally:
        _reporter.reset(token)


def progress_bar(iterable: Iterable[T], *, desc: str, total: int | None = None, progress: bool | None = None,
                 leave: bool = False) -> Iterator[T]:
    """Iterate over ``iterable`` with a bar labelled ``desc`` when :func:`progress_enabled` says so.

    Inside :func:`reporting`, the callback is told each step instead (unless ``progress`` is ``False``).
    """
    reporter = _reporter.get()
    if reporter is not None and progress is not False:
        for done, item in enumerate(iterable, 1):
            yield item
            reporter(desc, done, total)
        return
    if not progress_enabled(progress):
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, leave=leave, dynamic_ncols=True)
