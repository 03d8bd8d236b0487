"""The one-line bars under the panes: runtime tabs, the key legend and the replay timeline."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..core.telemetry.units import clock
from .pane import ReusedLines
from .render import bar


def speed_text(speed: float) -> str:
    """'1/16x' below 1, '4x' above: how the replay speed reads."""
    return f"1/{round(1 / speed)}x" if 0 < speed < 1 else f"{speed:g}x"


class TabBar(ReusedLines, Widget):
    DEFAULT_CSS = "TabBar { height: 1; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.tabs: list[str] = ["all"]
        self.active = 0

    def render(self) -> Text:
        t = Text(" Neuron Apps  ", style="bold")
        for i, name in enumerate(self.tabs[:9]):
            label = f"[{i + 1}]:{name}"
            if i == self.active:
                t.append(f">{label}<", style="bold green")
            else:
                t.append(f" {label} ")
            t.append(" ")
        return t


class KeyLegend(ReusedLines, Widget):
    DEFAULT_CSS = "KeyLegend { height: 1; }"

    def __init__(self, replay: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.replay = replay

    def render(self) -> Text:
        # (the pane keys second: at 80 columns they are what brings up the panes that do not fit)
        keys = [("q", "quit"), ("?", "help"), ("gtwmihv", "panes"), ("f", "FLOPS"), ("e", "engines"),
                ("p", "pause"), ("a/d", "tab"), ("+/-", "refresh"), ("r", "record"), ("b", "time base")]
        if self.replay:
            keys = [("q", "quit"), ("?", "help"), ("gtwmihv", "panes"), ("space", "pause"), ("[ ]", "step"),
                    ("←→", "10s"), ("j", "jump"), ("< >", "speed"), ("f", "FLOPS")]
        t = Text()
        for k, v in keys:
            t.append(f" {k}", style="bold reverse")
            t.append(f" {v} ")
        return t


class TimelineBar(ReusedLines, Widget):
    DEFAULT_CSS = "TimelineBar { height: 1; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.pos = 0.0
        self.duration = 0.0
        self.speed = 1.0
        self.paused = False
        self.at_end = False

    def render(self) -> Text:
        t = Text()
        state = "PAUSED" if self.paused else "▶"
        t.append(f" {state} {speed_text(self.speed)} ", style="bold reverse")
        t.append(f" {clock(self.pos)} / {clock(self.duration)} ")
        w = max(5, self.size.width - 50)  # room for the clock and "end of recording"
        frac = self.pos / self.duration if self.duration else 1.0
        t.append_text(bar(frac, w, "cyan"))
        if self.at_end:
            t.append(" end of recording", style="bold magenta")
        return t
