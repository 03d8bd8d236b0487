"""The panes. Each is one widget that renders one Rich renderable (no widget per bar), and
re-renders only when its data changed (Textual's cost grows with the number of widgets)."""

from __future__ import annotations

import numpy as np
from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.style import Style as TStyle
from textual.widget import Widget

try:  # (a Textual internal: without it the panes take Textual's own drawing path)
    from textual._border import get_box
except ImportError:  # pragma: no cover - another Textual
    get_box = None  # type: ignore[assignment]

from ..core.analysis.hints import Hint
from ..core.analysis.history import History
from ..core.telemetry.sample import ENGINE_NAMES, MEM_LABELS, Sample
from ..core.telemetry.units import clock
from .render import bar, bar_segments, human_bytes, human_count, human_rate, level_style, sparkline


def on_screen(widget: Widget) -> bool:
    """Was the widget drawn in the last screen update? (Off-screen panes skip their rebuild.)"""
    try:
        return widget in widget.screen._compositor.visible_widgets
    except Exception:  # private API moved: just draw
        return True


_STYLES: dict[str, Style] = {}


def _style(name: str) -> Style:
    st = _STYLES.get(name)
    if st is None:
        st = _STYLES[name] = Style.parse(name)
    return st


def fit(segments: list[Segment], width: int) -> list[Segment]:
    """One line of exactly `width` cells; an ellipsis marks a cut (as Rich's overflow="ellipsis")."""
    # (measured as one string: Rich counts a line of one-cell characters by its length)
    n = cell_len("".join([seg.text for seg in segments]))
    if n > width:
        return [*Strip(segments, n).crop(0, max(0, width - 1)), Segment("…")]
    return segments + [Segment(" " * (width - n))] if n < width else segments


def _crop_columns(strips: list[Strip], crop: Region, width: int) -> list[Strip]:
    """Whole lines cut to the crop's columns (as Textual's styles cache ends)."""
    if crop.column_span == (0, width):
        return strips
    x1, x2 = crop.column_span
    return [strip.crop(x1, x2) for strip in strips]


class ReusedLines:
    """A mixin: a widget's styled lines, while none is dirty, handed back without re-deriving its
    styles.

    Textual asks every widget under a changed line for its lines on each update, and its styles
    cache, before it looks a line up, works out the widget's colours, opacity, title and
    geometry: about 50 µs a widget, the containers and the quiet bars included, every frame. The
    lines it would return are the cached ones, so they are returned directly while none is dirty
    (the cache's own rule); anything else takes Textual's path. (A plain mixin, listed first:
    Textual reads CSS type names through the first widget base, so `Vertical` styles still apply.)
    """

    def render_lines(self: Widget, crop: Region) -> list[Strip]:  # type: ignore[misc]
        sc = self._styles_cache
        try:
            cache, dirty, width = sc._cache, sc._dirty_lines, sc._width
        except AttributeError:  # Textual's private cache changed shape: its own path
            return super().render_lines(crop)
        rows = crop.line_range
        if (self.BLANK or width != self.region.width or not dirty.isdisjoint(rows)
                or self.app.get_line_filters()):
            return super().render_lines(crop)
        try:
            out = [cache[y] for y in rows]
        except KeyError:
            return super().render_lines(crop)
        return _crop_columns(out, crop, width)


class Pane(ReusedLines, Widget):
    """A bordered pane drawn with Textual's line API.

    The pane builds one Rich renderable (`build`), renders it to lines itself, and tells Textual
    which lines changed: unchanged lines are not repainted, and layout runs only when the number
    of lines changes. (Rendering whole widgets each second was most of neuron-top's CPU.)
    """

    DEFAULT_CSS = "Pane { height: auto; }"
    sample: Sample | None = None

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._lines: list[list[Segment]] = []  # content lines, each exactly self._width cells
        self._width = -1
        self._stale = False
        self._frame_cache: tuple | bool | None = None  # None: not made yet; False: Textual's path
        self._framed: dict[int, tuple] = {}  # y -> (content line, frame key, widths, framed strip)
        self._edges: dict[tuple, Strip] = {}

    WAITING = "waiting…"

    def build(self):
        """The pane as Rich text; panes with a segment fast path get it from their segments."""
        lines = self.segment_lines(max(20, self.size.width - 4))
        if lines is None:
            return Text(self.WAITING, style="dim")
        out = Text(no_wrap=True, overflow="ellipsis")
        for k, line in enumerate(lines):
            if k:
                out.append("\n")
            for seg in line:
                out.append(seg.text, seg.style)
        return out

    def render(self):  # what the pane shows, as a renderable (tests read it; drawing uses render_line)
        return self.build()

    def set_sample(self, sample: Sample | None) -> None:
        self.sample = sample
        self.update_content()

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        """Lines as segments, for panes with a fast path (no Rich layout); None: use build()."""
        return None

    def _make_lines(self, width: int) -> list[list[Segment]]:
        """The pane's lines as segments, each exactly `width` cells."""
        seg_lines = self.segment_lines(width)
        if seg_lines is not None:
            return [fit(line, width) for line in seg_lines]
        console = self.app.console
        r = self.build()
        if isinstance(r, Text) and r.no_wrap:
            # Unwrapped text: split, truncate and render each line directly (Rich's general
            # wrap/crop/pad pipeline was the larger part of building a pane).
            out = []
            for line in r.split("\n", allow_blank=True):
                line.truncate(width, overflow="ellipsis")
                out.append(fit(list(line.render(console)), width))
            return out
        opts = console.options.update(width=width, height=None, highlight=False)
        return console.render_lines(r, opts, pad=True)

    def update_content(self) -> None:
        width = self.content_region.width
        if width <= 0:
            self._width = -1
            self.refresh(layout=True)
            return
        if self._lines and not on_screen(self):
            self._stale = True  # scrolled out of view: rebuild when it is drawn again
            return
        self._stale = False
        new = self._make_lines(width)
        old = self._lines if width == self._width else None
        self._width = width
        if old is None or len(old) != len(new):
            self._lines = new
            self.refresh(layout=True)
            return
        # An unchanged line keeps its old object, so its framed Strip is reused as it is. A
        # changed line is repainted border to border: Textual crops (and re-measures) every
        # line whose repaint ends short of the line it draws.
        dirty = []
        x0, full = -self.content_offset.x, self.outer_size.width
        for y, (a, b) in enumerate(zip(new, old, strict=True)):
            if a == b:
                new[y] = b
            else:
                dirty.append(Region(x0, y, full, 1))
        self._lines = new
        if dirty:
            self._repaint(dirty)

    def _repaint(self, regions: list[Region]) -> None:
        """Repaint these lines at the screen's next update.

        Textual's `refresh()` gets there through two message queues: a Prompt to the pane, whose
        idle handler posts an Update to the screen, which prompts itself. That is three task
        wake-ups for each pane in each frame, a large part of the event loop's cost once frames
        are cheap. A pane whose size does not change marks its lines and joins the screen's set
        of changed widgets directly (what the screen's Update handler does); one prompt to the
        screen then serves every pane of the frame. Anything unusual takes `refresh()`."""
        try:
            screen = self.screen
            changed = screen._dirty_widgets
            ok = self.display and self in screen._compositor
        except Exception:  # no screen yet, or Textual's private state moved
            ok = False
        if not ok:
            self.refresh(*regions)
            return
        self._set_dirty(*regions)
        changed.add(self)
        screen.check_idle()

    def get_content_height(self, container, viewport, width: int) -> int:
        if width != self._width:
            self._lines, self._width = self._make_lines(width), width
        return len(self._lines)

    def on_resize(self) -> None:
        self._stale = True

    # -- the frame ----------------------------------------------------------------------------
    # Textual styles every line of a widget on its own: a dozen colour and style operations per
    # line of a bordered pane, the larger part of a frame's cost once the panes draw from
    # segments. The frame (side borders, padding) is the same on every content line, so a pane
    # makes it once per style change and wraps it around each changed line; the top and bottom
    # edges (the title) are still drawn by Textual, once per change. Anything unusual (tint,
    # opacity, filters such as NO_COLOR or a blurred app's dimming, outline, vertical padding,
    # scrolling) takes Textual's own path.
    FAST_FRAME = True

    def notify_style_update(self) -> None:
        self._frame_cache = None  # a class (hinted, focus) or the theme changed: make it again
        super().notify_style_update()

    def _make_frame(self) -> tuple | bool:
        styles = self.styles
        border = styles.border
        edges = [edge for edge, _ in border]
        bt, br, bb, bl = edges
        if not self.FAST_FRAME or get_box is None or (any(edges) and not all(edges)):
            return False
        pad_top, pad_right, pad_bottom, pad_left = styles.padding
        if pad_top or pad_bottom or styles.tint.a or styles.text_opacity != 1.0 or self.opacity != 1.0:
            return False
        if any(edge for edge, _ in styles.outline) or (styles.has_rule("hatch") and styles.hatch != "none"):
            return False
        base, background = self.background_colors
        inner, outer = self._styles_cache.get_inner_outer(base, background)
        fill = inner.rich_style
        head = [Segment(" " * pad_left, fill)] if pad_left else []
        tail = [Segment(" " * pad_right, fill)] if pad_right else []
        if bt:
            (_, (_, brc), _, (_, blc)) = border
            head.insert(0, get_box(bl, inner, outer, TStyle(foreground=base + blc.multiply_alpha(1.0)))[1][0])
            tail.append(get_box(br, inner, outer, TStyle(foreground=base + brc.multiply_alpha(1.0)))[1][2])
        # (a new object per frame: cached lines compare it by identity)
        return (object(), head, tail, fill, pad_left + pad_right + (2 if bt else 0), 1 if bt else 0)

    def render_lines(self, crop: Region) -> list[Strip]:
        frame = self._frame_cache
        if frame is None:
            frame = self._frame_cache = self._make_frame()
        if not frame or self.app.get_line_filters():
            return super().render_lines(crop)
        key, head, tail, fill, extra, top = frame
        lines = self._current()
        width, height = self.region.size
        inner_width = width - extra
        cache = self._framed
        edges = self._edges
        n = len(lines)
        sizes = (width, self._width)  # (a blank row past the last line is cached for these only)
        out: list[Strip] = []
        for y in crop.line_range:
            if top and (y == 0 or y == height - 1):
                ekey = (key, y == 0, self._border_title if y == 0 else self._border_subtitle, width)
                strip = edges.get(ekey)
                if strip is None:
                    if len(edges) > 8:
                        edges.clear()
                    self._styles_cache.clear()
                    strip = edges[ekey] = self._styles_cache.render_widget(self, Region(0, y, width, 1))[0]
            else:
                row = y - top
                segs = lines[row] if row < n else None
                hit = cache.get(y)
                if hit is not None and hit[0] is segs and hit[1] is key and hit[2] == sizes:
                    strip = hit[3]
                else:
                    body = segs
                    if body is None or self._width != inner_width:
                        body = list(self.render_line(row).adjust_cell_length(inner_width, fill))
                    strip = Strip([*head, *body, *tail], width)
                    cache[y] = (segs, key, sizes, strip)
            out.append(strip)
        return _crop_columns(out, crop, width)

    def set_title(self, title: str) -> None:
        """A new border title repaints the top edge only (Textual's setter repaints the whole pane)."""
        if self._border_title is not None and self._border_title.plain == title:
            return
        self._border_title = self.render_str(title).expand_tabs(4).split()[0]  # (as Textual's setter)
        self._repaint([Region(-self.content_offset.x, -self.content_offset.y, self.region.width, 1)])

    def _current(self) -> list[list[Segment]]:
        if self._stale or self._width < 0:  # (content_region is costly: not per line)
            width = self.content_region.width
            if width > 0:
                self._lines, self._width, self._stale = self._make_lines(width), width, False
        return self._lines

    def render_line(self, y: int) -> Strip:
        lines = self._current()
        return Strip(lines[y], self._width) if 0 <= y < len(lines) else Strip.blank(max(0, self._width))


class HeaderBar(Pane):
    """Two lines: what is shown and its state; training figures and neuron-top's own usage."""

    DEFAULT_CSS = "HeaderBar { height: 2; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.sample: Sample | None = None
        self.source = ""
        self.state = "CONNECTING"
        self.self_cpu = 0.0
        self.self_rss = 0
        self.recording = ""
        self.note = ""
        self.show_self = True

    def build(self) -> Text:
        s = self.sample
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" neuron-top ", style="bold reverse")
        state_style = {"LIVE": "bold green", "PAUSED": "bold yellow", "STALE": "bold red", "REPLAY": "bold cyan",
                       "ENDED": "bold magenta"}.get(self.state.split()[0], "bold")
        t.append(" ")
        t.append(f" {self.state} ", style=state_style + " reverse")
        if self.recording:
            t.append(" ")
            t.append(" REC ", style="bold white on red")
            t.append(f" {self.recording}", style="red")
        if s:
            dev = s.device_type or "neuron device"
            t.append(f" {s.instance_type or 'unknown instance'} · {s.n_devices}x {dev}"
                     f" ({s.n_cores} cores{', NC-' + s.core_version if s.core_version else ''})")
        t.append(f" · {self.source}", style="dim")
        line1, t = t, Text(no_wrap=True, overflow="ellipsis")
        tr = s.training if s else None
        if tr is not None:
            t.append(f" step {tr.step}", style="bold")
            if tr.loss is not None:
                t.append(f" · loss {tr.loss:.3f}" + (" (proxy)" if tr.loss_source == "proxy" else ""))
            t.append(f" · {human_count(tr.tokens_per_s)} tok/s · MFU {tr.mfu * 100:.1f}%")
            t.append(f" · {tr.workload} {tr.dtype}", style="dim")
        elif s is not None:
            t.append(f" t={s.time_s:.0f}s · {s.executions} executions", style="bold")
            if s.latency_p50:
                t.append(f" · latency p50 {s.latency_p50 * 1e3:.1f} ms")
        if self.note:
            t.append(f" · {self.note}", style="yellow")
        if self.show_self:
            t.append(f"   self CPU {self.self_cpu:.1f}% RSS {self.self_rss / 2**20:.0f} MiB", style="dim")
        return Text("\n", no_wrap=True, overflow="ellipsis").join([line1, t])


class CoreGrid(Pane):
    """NeuronCore utilisation: one row per device, one column per core, one widget for all bars."""

    can_focus = True
    show_flops = reactive(False)
    show_engines = reactive(False)
    selected = reactive(0)

    class DeviceSelected(Message):
        def __init__(self, device: int) -> None:
            super().__init__()
            self.device = device

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.util: np.ndarray | None = None
        self.border_title = "NeuronCore Utilization"

    def set_data(self, sample: Sample, util: np.ndarray, avg: float | None) -> None:
        """The grid, and `avg` (the utilisation's mean) in its title; None keeps the title as it is
        (below a 1 s refresh it follows the once-a-second panes: a new title is a redrawn border)."""
        self.sample = sample
        self.util = util
        if avg is not None:
            cv = sample.core_version or ""
            self.set_title(f"NeuronCore {cv + ' ' if cv else ''}Utilization (Avg: {avg:.2f}%)")
        self.update_content()

    def watch_show_engines(self) -> None:
        self.update_content()

    def watch_show_flops(self) -> None:
        self.update_content()

    def watch_selected(self) -> None:
        self.update_content()

    def on_click(self, event: Click) -> None:
        s = self.sample
        if s is None:
            return
        row = event.y - 1  # first content row is the NC header
        if 0 <= row < s.n_devices and not self.show_engines:
            self.selected = row
            self.post_message(self.DeviceSelected(row))

    def move(self, delta: int) -> None:
        if self.sample is not None:
            self.selected = (self.selected + delta) % max(1, self.sample.n_devices)
            self.post_message(self.DeviceSelected(self.selected))

    WAITING = "waiting for data…"

    def build(self):
        if self.show_engines and self.sample is not None:
            return self._engines(self.sample)
        return super().build()

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        # The hot path: segments straight from numbers, no Rich layout (most of a frame's cost).
        if self.sample is None or self.util is None or self.show_engines:
            return None
        return self._grid_lines(width)

    def _grid_lines(self, width: int) -> list[list[Segment]]:
        s, u = self.sample, self.util
        assert s is not None and u is not None
        cpd = max(1, s.cores_per_device)
        label_w = 5
        cell = max(6, (width - label_w) // cpd)
        num_w = 6
        bar_w = max(0, cell - num_w - 2)
        if bar_w < 3:
            bar_w = 0
        bold, sel = _style("bold"), _style("reverse bold")
        head = [Segment(" " * label_w)] + [Segment(f"NC{c}".ljust(cell)[:cell], bold) for c in range(cpd)]
        lines = [head]
        peak = s.core_peak_flops
        for d in range(s.n_devices):
            segs = [Segment(f"ND{d}".ljust(label_w), sel if d == self.selected else bold)]
            for c in range(cpd):
                i = d * cpd + c
                if i >= len(u):
                    break
                pct = float(u[i])
                st = _style(level_style(pct))
                if self.show_flops:
                    if s.flops is None:
                        val, frac = "n/a", 0.0
                    else:
                        val = f"{float(s.flops[i]) / 1e12:5.1f}T"
                        frac = float(s.flops[i]) / peak if peak else 0.0
                else:
                    val, frac = f"{pct:5.1f}%", pct / 100
                used = num_w
                if bar_w:
                    segs += bar_segments(frac, bar_w, st, gap=1)  # (the gap rides on the track)
                    used += bar_w + 1
                segs.append(Segment(val.rjust(num_w), st))
                if cell > used:
                    segs.append(Segment(" " * (cell - used)))
            lines.append(segs)
        if self.show_flops and s.flops is None:
            lines.append([Segment(" this telemetry has no flops field", _style("dim"))])
        return lines

    def _engines(self, s: Sample) -> Text:
        d = min(self.selected, max(0, s.n_devices - 1))
        cpd = max(1, s.cores_per_device)
        out = Text(f"ND{d} per-engine activity (e closes; ↑↓ on the grid or , . change device)\n", style="bold",
                   no_wrap=True, overflow="ellipsis")
        if s.engines is None:
            out.append("plain neuron-monitor reports carry no per-engine data", style="dim")
            return out
        width = max(30, self.size.width)
        col = max(9, (width - 6) // len(ENGINE_NAMES))
        bar_w = max(1, col - 8)
        out.append(" " * 6)
        for e in ENGINE_NAMES:
            out.append(e[:col - 1].ljust(col), style="bold")
        for c in range(cpd):
            i = d * cpd + c
            out.append(f"\nNC{c:<4}")
            for k in range(len(ENGINE_NAMES)):
                f = float(s.engines[k, i])
                out.append_text(bar(f, bar_w, level_style(f * 100)))
                out.append(f"{f * 100:6.1f}% ")
        return out


class HistoryPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.history: History | None = None
        self.device = 0
        self.border_title = "History"

    def set_history(self, history: History, sample: Sample, device: int) -> None:
        self.history, self.sample, self.device = history, sample, device
        self.update_content()

    WAITING = "no history yet"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        # Every frame at a fast refresh: segments straight from the rings, no Rich layout.
        h = self.history
        if h is None or not len(h.rings["util_avg"]):
            return None
        spark_w = max(10, self.size.width - 24)
        rows = [
            ("util avg", h.rings["util_avg"].values(spark_w)),
            (f"util ND{self.device}", h.device_util[self.device].values(spark_w) if self.device in h.device_util
             else np.zeros(0)),
            ("HBM bw", h.rings["hbm_bw_frac"].values(spark_w)),
            ("links", h.rings["link_frac"].values(spark_w)),
        ]
        bold = _style("bold")
        lines = []
        for name, vals in rows:
            head = Segment(f"{name:<10}", bold)
            if not len(vals) or not np.isfinite(vals).any():
                lines.append([head, Segment("n/a (not in this telemetry)", _style("dim"))])
                continue
            last = float(vals[-1])
            ok = np.isfinite(last)
            lines.append([head, Segment(sparkline(vals, spark_w, 0.0, 100.0), _style(level_style(last if ok else 0))),
                          Segment(f" {last:6.1f}%" if ok else "      -")])
        return lines


class VcpuPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "vCPU Utilization"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        bar_w = max(10, self.size.width - 36)
        bold = _style("bold")
        lines = [
            [Segment("System vCPU  ", bold),
             *bar_segments((s.sys_user + s.sys_system) / 100, bar_w, _style("green")),
             Segment(f" [{s.sys_user:5.2f}%,{s.sys_system:5.2f}%]")],
            [Segment("Runtime vCPU ", bold),
             *bar_segments((s.runtime_user + s.runtime_system) / 100, bar_w, _style("cyan")),
             Segment(f" [{s.runtime_user:5.2f}%,{s.runtime_system:5.2f}%]")],
        ]
        if len(s.vcpu_busy):
            hot = np.argsort(-s.vcpu_busy)[: max(1, min(8, (self.size.width - 14) // 9))]
            line = [Segment("busiest     ", bold)]
            for i in hot.tolist():
                b = float(s.vcpu_busy[i])
                line.append(Segment(f"{i}:{b:3.0f}% ", _style(level_style(b))))
            line.append(Segment(f" of {len(s.vcpu_busy)}", _style("dim")))
            lines.append(line)
        return lines


class MemoryPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Memory Usage Summary"

    CELL = 27  # one device's bar and figures; wide panes put several devices on a line

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        bold = _style("bold")
        hm = s.host_mem
        tot = s.mem.sum(axis=0)
        lines = [
            [Segment("Host   ", bold), Segment(
                f"Total {human_bytes(sum(hm))}  Tensors {human_bytes(hm[3])}  Constants {human_bytes(hm[1])}  "
                f"DMA Buffers {human_bytes(hm[2])}  App. Memory {human_bytes(hm[0])}")],
            [Segment("Device ", bold), Segment(f"Total {human_bytes(tot.sum())}  " + "  ".join(
                f"{lab} {human_bytes(tot[k])}" for k, lab in enumerate(MEM_LABELS)))],
        ]
        dm = s.device_mem()
        cap = s.hbm_capacity
        cap_text = human_bytes(cap) if cap else "?"
        per_line = max(1, width // self.CELL) if len(dm) > 1 else 1
        cell = width // per_line
        text_w = 2 + 2 * max(len(cap_text), 6)  # " 16.5GB/32.0GB"
        bar_w = max(4, cell - 5 - text_w - 1)
        line: list[Segment] = []
        for d, used in enumerate(dm):
            if d % per_line == 0:
                line = []
                lines.append(line)
            frac = used / cap if cap else 0.0
            text = f" {human_bytes(used)}/{cap_text}"
            line.append(Segment(f"ND{d:<3}", bold))
            line += bar_segments(frac, bar_w, _style(level_style(frac * 100)))
            line.append(Segment(text.ljust(cell - 5 - bar_w)))
        return lines


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
        Binding("enter", "toggle", show=False),
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
            return f"NC {ident} · {human_bytes(int(s.mem[ident].sum()))}"
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
            style = _style("reverse") if self.top + y == self.cursor and self.has_focus else None
            lines.append([Segment("  " * depth + mark + self._label(kind, ident), style)])
        return lines

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta
        self.update_content()

    def action_toggle(self) -> None:
        rows = self.rows()
        if 0 <= self.cursor < len(rows) and rows[self.cursor][0] != "cat":
            key = rows[self.cursor][:2]
            self.expanded.symmetric_difference_update({key})
            self.update_content()

    def on_click(self, event: Click) -> None:
        self.cursor = self.top + event.y - 1  # the first content row is below the border
        self.action_toggle()

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


class InterconnectPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Interconnect (NeuronLink, collectives, EFA)"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        dim, bold = _style("dim"), _style("bold")
        if s.link_rate is None and not s.collectives:
            return [[Segment("no link or collective data: plain neuron-monitor reports do not carry it", dim)]]
        lines: list[list[Segment]] = []
        if s.link_pairs and s.link_rate is not None and len(s.link_rate):
            rate = s.link_rate
            bw = s.link_bw or 1.0
            lines.append([Segment(f"NeuronLink {len(s.link_pairs)} links, {human_rate(bw)} each · "
                                  f"mean {rate.mean() / bw * 100:.1f}% · max {rate.max() / bw * 100:.1f}%", bold)])
            cols = max(1, max(20, width) // 16)
            line: list[Segment] = []
            for k, ((a, b), r) in enumerate(zip(s.link_pairs, rate.tolist(), strict=False)):
                if k % cols == 0:
                    line = []
                    lines.append(line)
                frac = r / bw
                line.append(Segment(f"{a:>2}-{b:<2}", dim))
                line += bar_segments(frac, 5, _style(level_style(frac * 100)))
                line.append(Segment(f"{frac * 100:3.0f}% "))
        elif s.n_devices <= 1:
            lines.append([Segment("single device: no NeuronLink links", dim)])
        if s.collectives:
            head = ("collective", "op", "size", "calls/step", "algbw", "busbw", "exposed")
            rows = [(c.name, c.op, human_bytes(c.bytes), str(c.calls_per_step or c.count),
                     human_rate(c.algbw_bytes_per_s), human_rate(c.busbw_bytes_per_s),
                     f"{c.exposed_s / max(s.period_s, 1e-9) * 100:.0f}%") for c in s.collectives]
            widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]

            def cells(r: tuple[str, ...]) -> str:
                return " ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths,
                                                                                                     strict=True)))
            lines.append([Segment(cells(head), bold)])
            lines += [[Segment(cells(r))] for r in rows]
        if s.efa_rate is not None:
            frac = s.efa_rate / s.efa_bw if s.efa_bw else 0.0
            lines.append([Segment(f"EFA {human_rate(s.efa_rate)} of {human_rate(s.efa_bw)} ({frac * 100:.1f}%)")])
        return lines


class HintsPane(Pane):
    FAST_FRAME = False  # it scrolls when the hints outgrow it; it rarely changes anyway

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.hints: list[Hint] = []
        self._key: tuple = ()
        self.util = 0.0
        self.threshold = 70.0
        self.border_title = "Why below 70 %? (hints)"

    def set_hints(self, hints: list[Hint], util: float, threshold: float) -> None:
        # What the pane shows depends on these only: most frames change none of them (hints are
        # evaluated once a second), and then the pane is not rebuilt at all.
        below = not hints and util < threshold
        key = (tuple(hints), threshold, util >= threshold, round(util, 1) if below else None,
               self.content_region.width)
        if key == self._key and self._lines:
            return
        self.hints, self.util, self.threshold = hints, util, threshold
        title = f"Hints (threshold {threshold:.0f} %)"
        if self.border_title != title:  # setting it repaints the whole pane, even to the same text
            self.border_title = title
        self._key = key
        self.update_content()

    def build(self):
        if not self.hints:
            if self.util >= self.threshold:
                # No live number here: the grid's title has it, and a line that changes every
                # frame at the bottom of the screen makes Textual repaint everything in between.
                return Text(f"✓ average utilisation ≥ {self.threshold:.0f} %: no bottleneck to explain",
                            style="green")
            return Text(f"… utilisation {self.util:.1f} % < {self.threshold:.0f} % (confirming for a few seconds)",
                        style="yellow")
        out = Text()
        for k, h in enumerate(self.hints[:3]):
            if k:
                out.append("\n")
            sev = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}[h.severity]
            out.append("● ", style=sev)
            out.append(h.title, style="bold")
            out.append(f"  [{h.kind}, {h.severity}, confidence {h.confidence:.0%}]", style="dim")
            out.append("\n  " + " · ".join(e.text() for e in h.evidence[:4]), style="")
            out.append("\n  → " + h.action, style="italic")
        return out


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
        keys = [("q", "quit"), ("?", "help"), ("f", "FLOPS"), ("e", "engines"), ("p", "pause"),
                ("a/d", "tab"), ("enter/x", "tree"), ("+/-", "refresh"), ("r", "record")]
        if self.replay:
            keys = [("q", "quit"), ("?", "help"), ("space", "pause"), ("[ ]", "step"), ("←→", "10s"),
                    ("j", "jump"), ("< >", "speed"), ("f", "FLOPS"), ("e", "engines")]
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
        t.append(f" {state} {self.speed:g}x ", style="bold reverse")
        t.append(f" {clock(self.pos)} / {clock(self.duration)} ")
        w = max(5, self.size.width - 50)  # room for the clock and "end of recording"
        frac = self.pos / self.duration if self.duration else 1.0
        t.append_text(bar(frac, w, "cyan"))
        if self.at_end:
            t.append(" end of recording", style="bold magenta")
        return t
