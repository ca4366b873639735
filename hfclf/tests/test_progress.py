"""Progress bars (hfclf.infra.progress): live on a terminal; in non-interactive output (dvc repro
logs, CI) one line every tracking.progress_every_seconds, never one per step."""
from __future__ import annotations

import io
import time

from hfclf.infra import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_interactive_output_gets_a_first_and_a_last_line_not_one_per_step():
    stream = io.StringIO()                              # not a tty: like a dvc repro log
    bar = progress.bar(total=2500, desc="train", unit="step", file=stream, every=30)
    for step in range(2500):
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{1 / (step + 1):.4f}", refresh=False)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and 1 <= len(lines) <= 3, lines
    assert lines[-1].startswith("train: 100%") and "2500/2500" in lines[-1]


def test_non_interactive_lines_come_every_n_seconds():
    stream = io.StringIO()
    for _ in progress.bar(range(40), desc="predict", unit="batch", file=stream, every=0.1):
        time.sleep(0.01)                                # 0.4 s in all: about 4 timed lines
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 9, lines
    assert all(line.startswith("predict:") for line in lines)


def test_the_configured_interval_applies_and_zero_turns_lines_off(monkeypatch):
    for key in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(key, raising=False)       # configure() may set them: restored afterwards
    stream = io.StringIO()
    try:
        progress.configure(0)
        for _ in progress.bar(range(100), desc="x", file=stream):
            pass
    finally:
        progress.configure(None)
    assert stream.getvalue() == "" and progress.every_seconds() == progress.DEFAULT_EVERY_SECONDS


def test_a_terminal_gets_a_live_bar():
    stream = FakeTerminal()
    for _ in progress.bar(range(200), desc="train", file=stream):
        time.sleep(0.001)
    assert stream.getvalue().count("\r") >= 2            # redrawn in place
