"""Block charts with a value scale and a time axis, as segment lines (btop's graphs, drawn with the
eighth blocks so a column's height reads to an eighth of a row).

A chart covers the last `span_s` seconds before `t_end`; each column is the mean of the values whose
times fall in its slice, blank where there are none (a gap in the telemetry shows as a gap).
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style

_EIGHTHS = np.array([" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"])
SCALE_W = 5  # "100%" and the axis line


def columns(times: np.ndarray, values: np.ndarray, t_end: float, span_s: float, width: int) -> np.ndarray:
    """[width] means per time slice of (t_end - span_s, t_end]; NaN where a slice has no value."""
    out = np.full(width, np.nan)
    if not len(times) or width <= 0:
        return out
    ok = np.isfinite(values) & (times > t_end - span_s) & (times <= t_end + 1e-9)
    if not ok.any():
        return out
    col = np.minimum(((times[ok] - (t_end - span_s)) / span_s * width).astype(np.int64), width - 1)
    sums = np.bincount(col, values[ok], minlength=width)
    cnt = np.bincount(col, minlength=width)
    has = cnt > 0
    out[has] = sums[has] / cnt[has]
    # Reports sparser than the columns (1 s reports, 0.6 s columns): a value holds until the next
    # report is due, so a steady figure is a solid bar, and a missing report is still a gap.
    t = times[ok]
    if len(t) > 1:
        hold = int(np.ceil(float(np.median(np.diff(t))) / (span_s / width) - 1e-9))
        last = int(np.flatnonzero(has)[-1])
        for _ in range(1, min(hold, width)):
            gap = np.isnan(out[1:last + 1]) & np.isfinite(out[:last])
            if not gap.any():
                break
            out[1:last + 1][gap] = out[:last][gap]
    return out


def span_label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def chart(cols: np.ndarray, rows: int, top: float, style: Style, axis: Style, unit: str = "%",
          band: tuple[np.ndarray, np.ndarray] | None = None, band_style: Style | None = None) -> list[list[Segment]]:
    """`rows` lines: the columns as block bars scaled 0..top, the scale at the left (top, middle, 0).
    `band` (low, high per column) shades the range behind the bars (for example min-max across cores)."""
    top = top if top > 0 else 1.0
    eighths = np.where(np.isfinite(cols), np.rint(np.clip(cols / top, 0, 1) * rows * 8), -1).astype(np.int64)
    if band is not None:
        lo8 = np.where(np.isfinite(band[0]), np.rint(np.clip(band[0] / top, 0, 1) * rows * 8), -1).astype(np.int64)
        hi8 = np.where(np.isfinite(band[1]), np.rint(np.clip(band[1] / top, 0, 1) * rows * 8), -1).astype(np.int64)
    lines = []
    for r in range(rows):  # r = 0 is the top row
        base = (rows - 1 - r) * 8  # eighths below this row
        fill = np.clip(eighths - base, 0, 8)
        cells = _EIGHTHS[fill]
        cells[eighths < 0] = " "
        label = _scale(top, unit) if r == 0 else (_scale(top / 2, unit) if r == rows // 2 and rows >= 3 else "")
        if r == rows - 1 and rows >= 2:
            label = _scale(0, unit)
        line = [Segment(f"{label:>{SCALE_W - 1}}│", axis)]
        if band is not None and band_style is not None:
            shade = (fill == 0) & (lo8 >= 0) & (hi8 > base) & (lo8 < base + 8)
            cells = np.where(shade, "░", cells)
            line += _runs(cells, shade, style, band_style)
        else:
            line.append(Segment("".join(cells.tolist()), style))
        lines.append(line)
    return lines


def _runs(cells: np.ndarray, shade: np.ndarray, style: Style, band_style: Style) -> list[Segment]:
    """The row as segments: shaded cells in the band's style, the others in the bars'."""
    out: list[Segment] = []
    edges = np.flatnonzero(np.diff(shade.astype(np.int8))) + 1
    for a, b in zip([0, *edges.tolist()], [*edges.tolist(), len(cells)], strict=True):
        if b > a:
            out.append(Segment("".join(cells[a:b].tolist()), band_style if shade[a] else style))
    return out


def time_axis(width: int, span_s: float, axis: Style, end_label: str = "now") -> list[Segment]:
    """The line under a chart: the span's start at the left, its middle, and `end_label` at the right."""
    plot = width
    left = f"-{span_label(span_s)}"
    mid = f"-{span_label(span_s / 2)}"
    line = [" "] * plot
    for pos, text in ((0, left), (plot // 2 - len(mid) // 2, mid), (plot - len(end_label), end_label)):
        for i, ch in enumerate(text):
            if 0 <= pos + i < plot:
                line[pos + i] = ch
    return [Segment(" " * (SCALE_W - 1) + "└", axis), Segment("".join(line), axis)]


def _scale(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.0f}%"
    for suffix, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.0f}{suffix}"
    return f"{v:.0f}" if abs(v) >= 10 or v == 0 else f"{v:.1f}"
