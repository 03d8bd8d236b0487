"""Rich renderables for the panes: bars, sparklines, sizes. Pure functions of their inputs."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

SPARK = " ▁▂▃▄▅▆▇█"
_SPARK_CHARS = np.array(list(SPARK))
EIGHTHS = " ▏▎▍▌▋▊▉█"


def util_style(pct: float) -> str:
    """Compute utilisation, where busy is what a training job wants: green from the hint threshold
    (70 %) up, yellow below it, red when mostly idle, dim when idle."""
    if pct >= 70:
        return "green"
    if pct >= 40:
        return "yellow"
    return "red" if pct > 0 else "bright_black"


def fill_style(pct: float) -> str:
    """A capacity (device memory), where full is the danger: green, yellow from 70 %, red from 90 %."""
    if pct >= 90:
        return "bold red"
    return "yellow" if pct >= 70 else "green"


def level_style(pct: float) -> str:
    """A load (host CPUs, links): low is dim, busy is green, saturated is red."""
    if pct >= 90:
        return "bold red"
    if pct >= 70:
        return "green"
    if pct >= 30:
        return "yellow"
    return "cyan"


def bar(frac: float, width: int, style: str) -> Text:
    """A horizontal bar with eighth-block resolution, on a dotted track (so a bar's length reads
    against it), as Rich text."""
    t = Text()
    for seg in bar_segments(frac, max(1, width), Style.parse(style)):
        t.append(seg.text, seg.style)
    return t


TRACK_STYLE = Style.parse("bright_black")


def bar_segments(frac: float, width: int, style: Style, gap: int = 0) -> list[Segment]:
    """The bar as segments (the grid's hot path; `bar` wraps it as text), and `gap` blank cells
    after it (joined to the track: one segment fewer per bar)."""
    frac = 0.0 if not math.isfinite(frac) else min(1.0, max(0.0, frac))
    cells = frac * width
    full = int(cells)
    return list(_bar(full, int((cells - full) * 8), width, style, gap))


@lru_cache(maxsize=4096)
def _bar(full: int, rem: int, width: int, style: Style, gap: int = 0) -> tuple[Segment, ...]:
    # a grid of 64 cores draws the same few dozen bars frame after frame: build each once
    s = "█" * full + (EIGHTHS[rem] if full < width and rem else "")
    out = [Segment(s, style)] if s else []
    if width > len(s):
        out.append(Segment("·" * (width - len(s)) + " " * gap, TRACK_STYLE))
    elif gap:
        out.append(Segment(" " * gap))
    return tuple(out)


def sparkline(values: np.ndarray, width: int, lo: float = 0.0, hi: float | None = None) -> str:
    v = np.asarray(values[-width:] if width > 0 else values[:0], dtype=float)
    if len(v) == 0:
        return " " * max(0, width)
    finite = np.isfinite(v)
    top = hi if hi is not None else (float(np.nanmax(v)) if finite.any() else 1.0)
    top = top if top and top > lo else lo + 1.0
    level = np.rint(np.clip((np.where(finite, v, lo) - lo) / (top - lo), 0.0, 1.0) * 8).astype(int)
    # Anything above the floor draws at least the lowest bar: 5 % of link bandwidth is not "no data".
    level[finite & (v > lo) & (level == 0)] = 1
    level[~finite] = 0
    return "".join(_SPARK_CHARS[level].tolist()).rjust(width)


def human_bytes(n: float) -> str:
    """Memory in binary units, labelled as such (982,084,091,904 bytes is 914.6GiB, not "GB")."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}TiB"


def human_rate(bps: float) -> str:
    """Bytes per second in decimal units, as link and HBM bandwidths are quoted."""
    for unit, div in (("TB/s", 1e12), ("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if bps >= div:
            return f"{bps / div:.1f} {unit}"
    return f"{bps:.0f} B/s"


def human_count(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"
