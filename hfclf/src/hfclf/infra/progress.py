"""Progress bars that suit where the output goes.

A terminal gets a live tqdm bar. Non-interactive output (`dvc repro` logs, CI, a pipe) gets whole
lines, one every `tracking.progress_every_seconds` (default 30) plus the first and the last:
never a line per step (a redraw per step is ~2,500 lines per epoch at 40k rows). Every stage sets
the interval from its config (hfclf.infra.cli.stage); a value <= 0 turns the lines off.
"""
from __future__ import annotations

import sys
from typing import IO, Iterable

DEFAULT_EVERY_SECONDS = 30.0
_every_seconds = DEFAULT_EVERY_SECONDS


def configure(every_seconds: float | None) -> None:
    """Set the interval of non-interactive progress lines (None: the default). In non-interactive
    output the Hugging Face libraries' own bars (transformers' "Loading weights", datasets, hub
    downloads) are turned off: they cannot be throttled from here."""
    global _every_seconds
    _every_seconds = DEFAULT_EVERY_SECONDS if every_seconds is None else float(every_seconds)
    if not interactive(sys.stderr):
        import os

        for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(key, "1")


def every_seconds() -> float:
    return _every_seconds


def interactive(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush:
            flush()


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        disable: bool = False, file: IO[str] | None = None, every: float | None = None, **options):
    """A tqdm bar: live on a terminal, else a line every `every` seconds (default: the configured
    interval). Update its postfix with `set_postfix(..., refresh=False)`: a forced refresh would
    print a line."""
    from tqdm import tqdm

    stream = file if file is not None else sys.stderr
    if interactive(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream,
                    dynamic_ncols=True, **options)
    seconds = _every_seconds if every is None else float(every)
    # mininterval: no redraw sooner; maxinterval: tqdm's monitor thread forces one after that long
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable or seconds <= 0,
                file=_Lines(stream), mininterval=max(seconds, 0.0), maxinterval=max(seconds, 0.0),
                ncols=100, ascii=True, **options)
