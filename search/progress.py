"""Live progress of a run: plain lines for logs and pipes, a rich panel on a terminal.

The loop reports two things: events about one candidate ("c0007 evaluated: score +0.012")
and a periodic Status. A plain display prints each event as a timestamped line and a status
line when the status changes; the rich display redraws a small table in place.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class Status:
    proposals: int
    max_candidates: int
    evaluated: int
    in_flight: int
    rejections: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    best_id: str | None = None
    best_score: float | None = None
    spent_usd: float = 0.0
    budget_usd: float | None = None
    elapsed_s: float = 0.0
    candidates: int = 0  # accepted for evaluation: what counts against max_candidates
    proposing: int = 0  # proposals being written now

    def line(self) -> str:
        best = "-" if self.best_score is None else f"{self.best_id} {self.best_score:+.4f}"
        budget = "" if self.budget_usd is None else f"/{self.budget_usd:.2f}"
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items())) or "none"
        failed = ", ".join(
            f"{k} {v}" for k, v in sorted(self.outcomes.items()) if k != "ok"
        ) or "none"
        return (
            f"candidates {self.candidates}/{self.max_candidates} (proposed {self.proposals}) | "
            f"evaluated {self.evaluated} | running {self.in_flight} | "
            f"proposing {self.proposing} | best {best} | ${self.spent_usd:.4f}{budget} | "
            f"rejected: {rejected} | failed: {failed} | {self.elapsed_s:.0f}s"
        )


class Progress(Protocol):
    def event(self, subject: str, text: str) -> None: ...

    def status(self, status: Status) -> None: ...


class NullProgress:
    def event(self, subject: str, text: str) -> None:
        pass

    def status(self, status: Status) -> None:
        pass


class PlainProgress:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout
        self._last = ""

    def event(self, subject: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {subject}: {text}", file=self.stream, flush=True)

    def status(self, status: Status) -> None:
        line = status.line()
        core = line.rsplit(" | ", 1)[0]  # ignore the clock when deciding to print
        if core != self._last:
            self._last = core
            print(f"          {line}", file=self.stream, flush=True)


class RichProgress:
    """A live table (rich is optional: make_progress falls back to plain text)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console()
        self._events: deque[str] = deque(maxlen=12)
        self._status: Status | None = None
        self._live = Live(self._render(), console=self._console, refresh_per_second=4)
        self._live.start()

    def event(self, subject: str, text: str) -> None:
        self._events.append(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {subject}: {text}")
        self._live.update(self._render())

    def status(self, status: Status) -> None:
        self._status = status
        self._live.update(self._render())

    def close(self) -> None:
        self._live.stop()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(show_header=False, box=None)
        if self._status is not None:
            for part in self._status.line().split(" | "):
                key, _, value = part.partition(" ")
                table.add_row(f"[bold]{key}[/bold]", value)
        for line in self._events:
            table.add_row("", line)
        return table


def make_progress(kind: str = "auto") -> Progress:
    """"plain", "rich", "none", or "auto" (rich on a terminal when it is installed)."""
    if kind == "none":
        return NullProgress()
    if kind in ("rich", "auto") and (kind == "rich" or sys.stdout.isatty()):
        try:
            return RichProgress()
        except ImportError:
            if kind == "rich":
                raise
    return PlainProgress()
