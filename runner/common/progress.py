"""One-line progress bars on stderr: a training loop's (ProgressBar) and a grid of runs' (RunsBar).

    step  1200/3000 [#########.............]  40%  loss 1.4321  61.2k chars/s  eta 0:58
    runs  5/8 done, 1 failed [###############.........]  0:42 elapsed, ~0:25 left

It redraws at most ten times a second, only when stderr is a terminal (or
`force=True`), and `message()` prints a full line above it without tearing it.
"""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


class ProgressBar:
    """Step, loss and characters per second of a training run, redrawn in place."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, stream=None,
                 width: int = 24, force: bool = False, interval: float = 0.1):
        self.total = max(1, int(total))
        self.step = int(start)
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = enabled and (force or isatty)
        self.width = width
        self.interval = interval
        self.loss = float("nan")
        self.rate = 0.0
        self.eta = None
        self._last_draw = 0.0
        self._drawn = False

    def update(self, step: int, loss: float, chars_per_s: float, eta_s: float | None = None) -> None:
        self.step, self.loss, self.rate, self.eta = step, loss, chars_per_s, eta_s
        now = time.monotonic()
        if self.enabled and (now - self._last_draw >= self.interval or step >= self.total):
            self._last_draw = now
            self._draw()

    def line(self) -> str:
        frac = min(1.0, self.step / self.total)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        digits = len(str(self.total))
        eta = f"  eta {clock(self.eta)}" if self.eta is not None else ""
        return (f"step {self.step:>{digits}}/{self.total} [{bar}] {frac:4.0%}  loss {self.loss:.4f}  "
                f"{_rate(self.rate)} chars/s{eta}")

    def _draw(self) -> None:
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def message(self, text: str, emit=None) -> None:
        """Print `text` as its own line (with `emit`, default print to stdout), then redraw the bar."""
        self.clear()
        if emit is None:
            print(text, flush=True)
        else:
            emit(text)
        if self.enabled:
            self._draw()

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class RunsBar:
    """runs  5/8 done, 1 failed [###############.........]  0:42 elapsed, ~0:25 left (stderr, terminals only)."""

    def __init__(self, total: int, already: int, enabled: bool, stream=None, width: int = 24):
        self.total, self.already, self.width = total, already, width
        self.stream = stream or sys.stderr
        self.enabled = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()
        self.done = self.failed = 0

    def update(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed
        if self.enabled:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def line(self) -> str:
        finished = self.done + self.failed
        frac = finished / max(1, self.total)
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.started
        new = finished - self.already
        left = f", ~{clock(elapsed / new * (self.total - finished))} left" if new > 0 and finished < self.total else ""
        return (f"runs {finished:>{len(str(self.total))}}/{self.total} done, {self.failed} failed "
                f"[{'#' * filled}{'.' * (self.width - filled)}] {clock(elapsed)} elapsed{left}")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
