"""A one-line progress bar on stderr, for long encodes and downloads.

    bar = ProgressBar(total=3200, show=None, unit="texts", desc="Encoding")
    for batch in batches:
        ...
        bar.update(len(batch))
    bar.close()

draws, redrawing in place with a carriage return:

    Encoding  45%|█████████           | 1440/3200 texts [00:12<00:14, 120.0 texts/s]

`show=None` means: only when stderr is a terminal (a log file or a pipe would fill up with
redraws) and the job is at least `min_total` long. Left out: nested bars, notebooks, terminal
width detection (the line is kept to about 80 columns instead).
"""

from __future__ import annotations

import sys
import time

AUTO_MIN_TEXTS = 256  # below this many texts (8 batches) an encode is quick; no bar by default
_WIDTH = 20  # bar cells; the whole line is about 80 columns


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


class ProgressBar:
    def __init__(self, total: int | None, show: bool | None = None, unit: str = "it",
                 desc: str = "", min_total: int | None = None, file=None, initial: int = 0):
        self.file = file if file is not None else sys.stderr  # looked up now: tests swap it
        if show is None:
            min_total = AUTO_MIN_TEXTS if min_total is None else min_total
            isatty = getattr(self.file, "isatty", None)
            show = bool(isatty and isatty()) and (total is None or total >= min_total)
        self.show = show
        self.total = total  # None when unknown (a download without Content-Length)
        self.unit = unit
        self.desc = desc
        self.done = initial  # work done before this bar started (a resumed job)...
        self._initial = initial  # ...which does not count towards the rate
        self.start = time.monotonic()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.show:
            return
        now = time.monotonic()
        if now - self._last_draw >= 0.1 or self.done == self.total:  # ≤10 redraws a second
            self._last_draw = now
            self._draw(now)

    def close(self, clear: bool = False) -> None:
        """Draw the final state and end the line, or with clear=True erase the bar instead."""
        if self.show:
            if clear:
                self.file.write("\r\x1b[K")
            else:
                self._draw(time.monotonic())
                self.file.write("\n")
            self.file.flush()
            self.show = False  # a second close() writes nothing

    def _count(self, n: float) -> str:
        return _bytes(n) if self.unit == "B" else f"{n:.0f}"

    def _draw(self, now: float) -> None:
        elapsed = now - self.start
        rate = (self.done - self._initial) / elapsed if elapsed >= 0.5 else 0.0  # too early to tell: shown as ?
        speed = f"{_bytes(rate)}/s" if self.unit == "B" else f"{rate:.1f} {self.unit}/s"
        if not rate:
            speed = f"?{self.unit}/s" if self.unit == "B" else f"? {self.unit}/s"
        if self.total:
            frac = min(self.done / self.total, 1.0)
            # Eighth-block characters give the bar 8 steps per cell.
            eighths = int(frac * _WIDTH * 8)
            bar = "█" * (eighths // 8)
            if eighths < _WIDTH * 8:
                bar += " ▏▎▍▌▋▊▉"[eighths % 8]
            left = _clock((self.total - self.done) / rate) if rate else "?"
            count = self._count(self.done) + "/" + self._count(self.total)
            if self.unit != "B":
                count += " " + self.unit
            line = (f"{self.desc} {frac:4.0%}|{bar:<{_WIDTH}}| {count} "
                    f"[{_clock(elapsed)}<{left}, {speed}]")
        else:
            line = f"{self.desc} {self._count(self.done)} [{_clock(elapsed)}, {speed}]"
        # \r returns to the line start; \x1b[K clears what a longer previous line left behind.
        self.file.write("\r" + line.lstrip() + "\x1b[K")
        self.file.flush()
