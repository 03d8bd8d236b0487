"""Where each pane goes for a terminal size: a plain function of the size, the panes' natural heights
and the pane the user asked for, so the layout is the same on every size and testable without a
screen. Panes never overlap and never leave the body; a pane that does not fit is not shown (its key
brings it up), rather than cut off or scrolled out of sight.

- Below TWO_COLUMNS columns: the core grid, then the graphs in the rows left; a pane's key shows that
  pane alone in the whole body (the key again, or escape, goes back), btop's box toggles.
- From TWO_COLUMNS: the grid and the graphs on the left; on the right, the asked-for pane first, then
  the others in PRIORITY order while they fit, and the memory tree in what is left (the memory pane's
  key shows the summary and the tree alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TWO_COLUMNS = 110
MIN_FLEX = 5  # the graphs and the tree are shown only with at least this many rows
# The right column's panes, in the order they are placed (each at its natural height, while it fits).
PRIORITY = ("training", "jobs", "memory", "interconnect", "health", "vcpu")
FLEX_RIGHT = "tree"
VIEWS = ("graphs", *PRIORITY, FLEX_RIGHT)  # the panes with a key of their own


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int


Natural = Callable[[str, int], int]  # (pane, width) -> the rows it needs at that width, border included


def plan(width: int, height: int, natural: Natural, view: str | None = None, asked: bool = True) -> dict[str, Box]:
    """The body's panes: id -> box (body coordinates); `view`: the pane the user brought up (`asked`)
    or the one a hint points at (placed first, the others after it), or None."""
    if width < TWO_COLUMNS:
        if view is not None and view != "grid":  # the pane at its height, what it leaves to the graphs (or tree)
            flex = FLEX_RIGHT if view == "memory" else "graphs"
            if view in ("graphs", FLEX_RIGHT):
                return {view: Box(0, 0, width, height)}
            return _column(0, width, height, [(view, natural(view, width))], flex)
        return _column(0, width, height, [("grid", natural("grid", width))], "graphs")
    left = width // 2
    right = width - left
    out = _column(0, left, height, [("grid", natural("grid", left))], "graphs")
    if view == "graphs" and asked and "graphs" not in out:  # too short for both: the graphs alone
        out = {"graphs": Box(0, 0, left, height)}
    order = [p for p in PRIORITY if p != view]
    if view in PRIORITY:
        order.insert(0, view)
    if view == "memory" and asked:  # the memory summary and its tree (the details), nothing else
        order = ["memory"]
    placed: list[tuple[str, int]] = []
    free = height
    for p in order:
        h = natural(p, right)
        if 0 < h <= free:
            placed.append((p, h))
            free -= h
    # The asked-for pane shows even when it is taller than the column (cut to the column).
    if view in PRIORITY and not any(p == view for p, _ in placed):
        placed = [(view, height)]
    if view == FLEX_RIGHT:
        placed = [(p, h) for p, h in placed if h <= height - MIN_FLEX]
        while sum(h for _, h in placed) > height - MIN_FLEX and placed:
            placed.pop()
    col = _column(left, right, height, placed, FLEX_RIGHT)
    if view == FLEX_RIGHT and asked and FLEX_RIGHT not in col:
        col = {FLEX_RIGHT: Box(left, 0, right, height)}
    out.update(col)
    return out


def _column(x: int, width: int, height: int, fixed: list[tuple[str, int]], flex: str) -> dict[str, Box]:
    """Panes stacked from the top at their heights (cut to the column), then `flex` in the rest."""
    out: dict[str, Box] = {}
    y = 0
    for p, h in fixed:
        h = min(h, height - y)
        if h <= 0:
            break
        out[p] = Box(x, y, width, h)
        y += h
    if height - y >= MIN_FLEX:
        out[flex] = Box(x, y, width, height - y)
    return out
