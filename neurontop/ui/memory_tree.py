"""The memory tree: device memory by core and category, host memory by category; keys move and fold."""

from __future__ import annotations

from rich.segment import Segment
from textual.binding import Binding
from textual.events import Click

from ..core.telemetry.sample import MEM_LABELS, Sample
from ..core.telemetry.units import core_name
from .pane import Pane, style_of
from .render import human_bytes


class MemoryTree(Pane):
    """Memory Usage Details: device > core > category, as neuron-top's tree (enter / x).

    Drawn with the line API like the other panes: only the rows in view are labelled, and only
    lines whose text changed are repainted (Textual's Tree widget repainted itself on every
    label change and cost about as much as all the other panes together).
    """

    can_focus = True
    BINDINGS = [
        Binding("up", "cursor(-1)", show=False), Binding("down", "cursor(1)", show=False),
        Binding("pageup", "cursor(-10)", show=False), Binding("pagedown", "cursor(10)", show=False),
        Binding("home", "cursor(-1000000)", show=False), Binding("end", "cursor(1000000)", show=False),
        Binding("enter", "toggle_row", show=False),
    ]

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Memory Usage Details (enter: expand, x: all)"
        self.expanded: set[tuple[str, int]] = set()  # ("dev", d) and ("core", i)
        self.cursor = 0
        self.top = 0
        self._shape: tuple[int, int] | None = None

    def set_sample(self, sample: Sample | None) -> None:
        if sample is not None and (sample.n_devices, sample.cores_per_device) != self._shape:
            self._shape = (sample.n_devices, sample.cores_per_device)
            self.expanded.clear()
            self.cursor = self.top = 0
        super().set_sample(sample)

    def rows(self) -> list[tuple[str, int, int]]:
        """Visible rows as (kind, id, depth): kind dev / core / cat; a cat's id is core * 5 + category."""
        s = self.sample
        if s is None:
            return []
        cpd = max(1, s.cores_per_device)
        out: list[tuple[str, int, int]] = []
        for d in range(s.n_devices):
            out.append(("dev", d, 0))
            if ("dev", d) in self.expanded:
                for i in range(d * cpd, (d + 1) * cpd):
                    out.append(("core", i, 1))
                    if ("core", i) in self.expanded:
                        out.extend(("cat", i * len(MEM_LABELS) + k, 2) for k in range(len(MEM_LABELS)))
        return out

    def is_expanded(self, kind: str, ident: int) -> bool:
        return (kind, ident) in self.expanded

    def _label(self, kind: str, ident: int) -> str:
        s = self.sample
        assert s is not None
        cpd = max(1, s.cores_per_device)
        if kind == "dev":
            return f"ND {ident} · {human_bytes(int(s.mem[ident * cpd:(ident + 1) * cpd].sum()))}"
        if kind == "core":
            return f"{core_name(ident, cpd)} · {human_bytes(int(s.mem[ident].sum()))}"
        i, k = divmod(ident, len(MEM_LABELS))
        return f"{MEM_LABELS[k]:<17}{human_bytes(int(s.mem[i, k]))}"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        rows = self.rows()
        if not rows:
            return None
        h = max(1, self.content_region.height)
        self.cursor = min(max(0, self.cursor), len(rows) - 1)
        self.top = min(max(self.top, self.cursor - h + 1), self.cursor, max(0, len(rows) - h))
        lines = []
        for y, (kind, ident, depth) in enumerate(rows[self.top:self.top + h]):
            mark = "  " if kind == "cat" else ("▼ " if (kind, ident) in self.expanded else "▶ ")
            style = style_of("reverse") if self.top + y == self.cursor and self.has_focus else None
            lines.append([Segment("  " * depth + mark + self._label(kind, ident), style)])
        return lines

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta
        self.update_content()

    def action_toggle_row(self) -> None:
        rows = self.rows()
        if 0 <= self.cursor < len(rows) and rows[self.cursor][0] != "cat":
            key = rows[self.cursor][:2]
            self.expanded.symmetric_difference_update({key})
            self.update_content()

    def on_click(self, event: Click) -> None:
        self.cursor = self.top + event.y - 1  # the first content row is below the border
        self.action_toggle_row()

    def on_focus(self) -> None:
        self.update_content()

    def on_blur(self) -> None:
        self.update_content()

    def toggle_all(self) -> None:
        s = self.sample
        if s is None:
            return
        if any(k == "dev" for k, _ in self.expanded):
            self.expanded.clear()
        else:
            self.expanded = {("dev", d) for d in range(s.n_devices)} | {("core", i) for i in range(s.n_cores)}
        self.update_content()
