"""The pane machinery: a bordered widget drawn with Textual's line API, repainting only changed lines.

Each pane (widgets.py) is one widget that renders one Rich renderable (no widget per bar), and
re-renders only when its data changed (Textual's cost grows with the number of widgets). The few
Textual internals this needs are used through textual_compat.py, on the pinned Textual only.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from ..core.telemetry.sample import Sample
from . import textual_compat as tc


def on_screen(widget: Widget) -> bool:
    """Was the widget drawn in the last screen update? (Off-screen panes skip their rebuild.)"""
    return tc.visible(widget)


_STYLES: dict[str, Style] = {}


def style_of(name: str) -> Style:
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


def _shape(s: Sample | None) -> tuple:
    """What a pane's number of lines depends on (its figures change every report, its shape rarely)."""
    if s is None:
        return ()
    return (s.n_devices, s.cores_per_device, len(s.jobs), len(s.collectives), s.training is None,
            s.link_rate is None, s.efa_rate is None, s.host_mem_total > 0, s.has_extension, bool(s.exec_errors))


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

    def render_lines(self, crop: Region) -> list[Strip]:
        out = tc.cached_lines(self, crop)  # type: ignore[arg-type]
        return out if out is not None else super().render_lines(crop)  # type: ignore[misc]


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
        self._frame_cache: tuple | None = None  # None: not made yet; (): Textual's path
        self._framed: dict[int, tuple] = {}  # y -> (content line, frame key, widths, framed strip)
        self._edges: dict[tuple, Strip] = {}
        self._natural: tuple[tuple, int] | None = None  # ((width, sample), lines) for natural_height

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

    def natural_height(self, outer_width: int) -> int:
        """Rows the pane needs at this outer width: its lines, the border and vertical padding (the
        lines it holds when they are for this width and current, else made once per sample)."""
        gutter = self.styles.gutter
        width = max(1, outer_width - gutter.width)
        if width == self._width and not self._stale and self._lines:
            return len(self._lines) + gutter.height
        key = (width, self.shape_key())
        if self._natural is None or self._natural[0] != key:
            self._natural = (key, len(self._make_lines(width)))
        return self._natural[1] + gutter.height

    def shape_key(self) -> tuple:
        """What the number of lines depends on (natural_height's cache key, with the width)."""
        return _shape(self.sample)

    def update_content(self) -> None:
        if not self.display:  # a pane the layout does not show: made when it is shown again
            self._stale = True
            return
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
        if not tc.mark_dirty(self, regions):
            self.refresh(*regions)

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

    def _make_frame(self) -> tuple:
        styles = self.styles
        border = styles.border
        edges = [edge for edge, _ in border]
        bt, br, bb, bl = edges
        if not self.FAST_FRAME or not tc.PRIVATE or (any(edges) and not all(edges)):
            return ()
        pad_top, pad_right, pad_bottom, pad_left = styles.padding
        if pad_top or pad_bottom or styles.tint.a or styles.text_opacity != 1.0 or self.opacity != 1.0:
            return ()
        if any(edge for edge, _ in styles.outline) or (styles.has_rule("hatch") and styles.hatch != "none"):
            return ()
        sides = tc.side_borders(self, border)
        if sides is None:
            return ()
        left, right, fill = sides
        head = [*left, *([Segment(" " * pad_left, fill)] if pad_left else [])]
        tail = [*([Segment(" " * pad_right, fill)] if pad_right else []), *right]
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
                ekey = (key, y == 0, tc.edge_key(self, y == 0), width)
                strip = edges.get(ekey)
                if strip is None:
                    if len(edges) > 8:
                        edges.clear()
                    strip = edges[ekey] = tc.render_edge(self, y, width)
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
        if not tc.set_border_title(self, title):
            return
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


