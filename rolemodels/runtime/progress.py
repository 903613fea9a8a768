"""Progress on a terminal (a line that updates), one line per finished stage otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, quiet: bool = False, stream=None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.live = not quiet and self.stream.isatty()
        self.label, self.total, self.count, self.started, self.last = "", 0, 0, 0.0, {}

    def note(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.count, self.started, self.last = label, total, 0, time.perf_counter(), {}
        self._draw()

    def step(self, record: dict) -> None:
        self.count += 1
        self.last = record
        self._draw()

    def _draw(self) -> None:
        if not self.live:
            return
        width = 20
        filled = int(width * self.count / max(self.total, 1))
        loss = f" loss {self.last['loss']:.3f}" if "loss" in self.last else ""
        bar = "#" * filled + "." * (width - filled)
        print(f"\r{self.label} [{bar}] {self.count}/{self.total}{loss} {time.perf_counter() - self.started:.0f}s ",
              end="", file=self.stream, flush=True)

    def done(self) -> None:
        if self.quiet:
            return
        seconds = time.perf_counter() - self.started
        end = "\r" if self.live else ""
        print(f"{end}{self.label}: done in {seconds:.1f}s" + " " * 30, file=self.stream, flush=True)
