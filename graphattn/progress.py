"""Progress reporting that suits a terminal and a log file alike.

:func:`track` wraps an iterable. On a terminal (or in a notebook) it is tqdm's bar; anywhere
else (a file, a pipe, a job log) it writes plain lines, without carriage returns, at each tenth
of the way but at most one per ``min_interval_s``, plus one every ``interval_s`` however slow
the loop, so that a log gets a few readable lines instead of a redrawn bar.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, Optional, TextIO, TypeVar

from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as notebook_tqdm  # imported (warning silenced) by tqdm.auto
from tqdm.std import tqdm as std_tqdm

__all__ = ["track"]

T = TypeVar("T")

#: whether tqdm found a notebook kernel (its bar is a widget there, not carriage returns)
_NOTEBOOK = notebook_tqdm is not std_tqdm


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def track(iterable: Iterable[T], desc: str = "", total: Optional[int] = None, *, leave: bool = True,
          disable: bool = False, file: Optional[TextIO] = None, steps: int = 10, interval_s: float = 30.0,
          min_interval_s: float = 10.0) -> Iterable[T]:
    """Iterates over ``iterable`` while reporting progress on ``file`` (default: stderr).

    Args:
        iterable: what to iterate over.
        desc: the label of the bar or lines.
        total: number of items (default ``len(iterable)`` when it has one).
        leave: keep the bar when done; in line mode, write a final line even when the loop was
            too quick to write any other.
        disable: report nothing.
        file: the stream; a terminal gets tqdm's bar, anything else lines.
        steps: line mode: a line at each ``1/steps`` of ``total``...
        interval_s: ...and one whenever this long has passed since the last line...
        min_interval_s: ...but never two step lines within this many seconds.
    """
    if disable:
        return iterable
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    stream = sys.stderr if file is None else file
    if _is_terminal(stream) or (_NOTEBOOK and file is None):
        return auto_tqdm(iterable, desc=desc, total=total, leave=leave, file=file)
    return _lines(iterable, desc, total, leave, stream, steps, interval_s, min_interval_s)


def _line(desc: str, count: int, total: Optional[int], elapsed: float) -> str:
    rate = count / elapsed if elapsed > 0 else 0.0
    if total:
        remaining = (total - count) / rate if rate > 0 else 0.0
        done = f"{100 * count // total:3d}% {count:,}/{total:,}"
        times = f"[{std_tqdm.format_interval(elapsed)}<{std_tqdm.format_interval(remaining)}, {rate:,.1f} it/s]"
    else:
        done = f"{count:,}"
        times = f"[{std_tqdm.format_interval(elapsed)}, {rate:,.1f} it/s]"
    return f"{desc}: {done} {times}" if desc else f"{done} {times}"


def _lines(iterable: Iterable[T], desc: str, total: Optional[int], leave: bool, stream: TextIO, steps: int,
           interval_s: float, min_interval_s: float) -> Iterator[T]:
    start = last = time.monotonic()
    count = step = 0
    shown = None  # the count of the last line written
    for item in iterable:
        yield item
        count += 1
        now = time.monotonic()
        reached = count * steps // total if total else 0
        if (total is None or count < total) and (
                now - last >= interval_s or (reached > step and now - last >= min_interval_s)):
            print(_line(desc, count, total, now - start), file=stream, flush=True)
            last, shown = now, count
        step = max(step, reached)
    if (leave or shown is not None) and shown != count:
        print(_line(desc, count, total, time.monotonic() - start), file=stream, flush=True)
