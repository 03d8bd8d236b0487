"""Modal screens: help (every key) and the replay jump prompt."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

KEY_NAMES = {"question_mark": "?", "plus,equals_sign": "+", "minus": "-", "comma": ",", "full_stop": ".",
             "left_square_bracket": "[", "right_square_bracket": "]", "less_than_sign": "<",
             "greater_than_sign": ">", "space": "space", "ctrl+c": "ctrl+c"}

EXTRA = [("↑ ↓", "move the tree selection (or the device, when the grid has focus)"),
         ("enter", "expand/collapse the tree item"), ("tab", "move focus between the grid and the tree"),
         ("click", "select a device row in the grid")]
# What the colours mean (render.py's util_style, fill_style, level_style); never the only signal:
# every level is also a number and a bar's length, so NO_COLOR and colour-blind readers lose nothing.
COLOURS = [("utilisation", "green from 70 % (the hint threshold), yellow from 40 %, red below, grey idle"),
           ("memory", "yellow from 70 % of capacity, red from 90 %"),
           ("links, HBM, vCPUs", "loads: plain until busy, red when saturated"),
           ("borders", "heavy red: the pane a hint points at; round accent: the focused pane")]


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def __init__(self, bindings, replay: bool) -> None:
        super().__init__()
        self.items = bindings
        self.replay = replay

    def compose(self) -> ComposeResult:
        t = Table(title="neuron-top keys", show_header=True, header_style="bold", box=None)
        t.add_column("key", style="bold cyan")
        t.add_column("action")
        seen = set()
        for b in self.items:
            if b.action in seen or b.key.isdigit() and b.key != "1":
                continue
            seen.add(b.action)
            key = "1-9" if b.key == "1" else KEY_NAMES.get(b.key, b.key)
            desc = b.description or b.action
            if b.action.startswith("replay") and not self.replay:
                desc += " (replay)"
            t.add_row(key, desc)
        for k, d in EXTRA:
            t.add_row(k, d)
        c = Table(title="colours", show_header=False, box=None)
        c.add_column(style="bold")
        c.add_column()
        for k, d in COLOURS:
            c.add_row(k, d)
        with Vertical(id="help"):
            with VerticalScroll(id="help-body"):  # (a short terminal scrolls it, with a scrollbar)
                yield Static(t)
                yield Static(c)
            yield Static("esc or ? closes · ↑↓ pgup pgdn scroll", classes="dim")


class JumpScreen(ModalScreen[float | None]):
    """The jump prompt: dismissed with the time asked for, in seconds from the start (replay's
    parse_jump, relative to `position()`). A time it cannot read keeps the prompt open, with the error."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, position) -> None:
        super().__init__()
        self.position = position

    def compose(self) -> ComposeResult:
        with Vertical(id="jump"):
            yield Static("Jump to: 90 · 1:30 · 1m30s (from the start), +10s · -2m · +1m30s (relative)")
            yield Input(placeholder="time", id="jump-input")
            yield Static("", id="jump-error", classes="dim")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from ..core.store.replay import parse_jump

        if not event.value.strip():
            self.dismiss(None)
            return
        try:
            t = parse_jump(event.value, self.position())
        except ValueError as exc:
            self.query_one("#jump-error", Static).update(f"[red]{exc}[/red]")
            return
        self.dismiss(t)

    def action_cancel(self) -> None:
        self.dismiss(None)
