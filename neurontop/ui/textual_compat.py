"""Every use of Textual's private API, in one place, and only on the Textual version it was written for.

neuron-top's panes and input thread are cheaper than Textual's general paths (docs/rendering.md):
they reuse a widget's cached lines, mark changed lines without two message hops, draw a pane's
frame once per style change, and sleep in the input thread while no key is pressed. Each needs an
internal of Textual. pyproject.toml pins Textual to PINNED; on any other version (or with
NEURON_TOP_TEXTUAL_PUBLIC=1) `PRIVATE` is False and every function here takes Textual's public
path instead, with the same screen (tests/test_ui_pilot.py compares both).
"""

from __future__ import annotations

import os
from importlib.metadata import version

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.style import Style as TStyle
from textual.widget import Widget

PINNED = "8.2.8"
TEXTUAL = version("textual")
PRIVATE = TEXTUAL == PINNED and not os.environ.get("NEURON_TOP_TEXTUAL_PUBLIC")


def visible(widget: Widget) -> bool:
    """Was the widget drawn in the last screen update? (True when that cannot be known.)"""
    if not PRIVATE:
        return True
    try:
        return widget in widget.screen._compositor.visible_widgets
    except Exception:  # no screen yet
        return True


def cached_lines(widget: Widget, crop: Region) -> list[Strip] | None:
    """The widget's styled lines from its styles cache while none of them is dirty, else None."""
    if not PRIVATE:
        return None
    sc = widget._styles_cache
    cache, dirty, width = sc._cache, sc._dirty_lines, sc._width
    rows = crop.line_range
    if widget.BLANK or width != widget.region.width or not dirty.isdisjoint(rows) or widget.app.get_line_filters():
        return None
    try:
        out = [cache[y] for y in rows]
    except KeyError:
        return None
    if crop.column_span == (0, width):
        return out
    x1, x2 = crop.column_span
    return [strip.crop(x1, x2) for strip in out]


def mark_dirty(widget: Widget, regions: list[Region]) -> bool:
    """Mark lines for the screen's next update directly (what the screen's Update handler does,
    without a Prompt to the widget and an Update to the screen); False: call refresh() instead."""
    if not PRIVATE:
        return False
    try:
        screen = widget.screen
        changed = screen._dirty_widgets
        ok = widget.display and widget in screen._compositor
    except Exception:  # no screen yet
        return False
    if not ok:
        return False
    widget._set_dirty(*regions)
    changed.add(widget)
    screen.check_idle()
    return True


def side_borders(widget: Widget, border: tuple) -> tuple[list[Segment], list[Segment], Style] | None:
    """The left and right border segments of a pane's content lines and its fill style, or None."""
    if not PRIVATE:
        return None
    from textual._border import get_box

    base, background = widget.background_colors
    inner, outer = widget._styles_cache.get_inner_outer(base, background)
    head: list[Segment] = []
    tail: list[Segment] = []
    (bt, _), (br, brc), _, (bl, blc) = border
    if bt:
        head.append(get_box(bl, inner, outer, TStyle(foreground=base + blc.multiply_alpha(1.0)))[1][0])
        tail.append(get_box(br, inner, outer, TStyle(foreground=base + brc.multiply_alpha(1.0)))[1][2])
    return head, tail, inner.rich_style


def edge_key(widget: Widget, top: bool) -> object:
    """What the top (title) or bottom (subtitle) edge of a pane depends on."""
    return widget._border_title if top else widget._border_subtitle


def render_edge(widget: Widget, y: int, width: int) -> Strip:
    """One edge row of a pane, drawn by Textual."""
    widget._styles_cache.clear()
    return widget._styles_cache.render_widget(widget, Region(0, y, width, 1))[0]


def set_border_title(widget: Widget, title: str) -> bool:
    """Set the title without repainting the whole pane; False: nothing changed. (Public path: the
    border_title setter, which repaints the pane.)"""
    if not PRIVATE:
        if widget.border_title == title:
            return False
        widget.border_title = title
        return True
    if widget._border_title is not None and widget._border_title.plain == title:
        return False
    widget._border_title = widget.render_str(title).expand_tabs(4).split()[0]  # (as Textual's setter)
    return True


_POLL_S = 0.1  # Textual's own period: used whenever the parser's state cannot be read

_QUIET: list[type] = []


def quiet_driver(default: type) -> type:
    """The input driver: Textual's Linux driver with an input thread that sleeps while no key is
    pressed (on the pinned Textual; TEXTUAL_DRIVER and the test driver stay as they are).

    Textual's input thread wakes ten times a second to time out half-received escape sequences (a
    lone Esc), with or without input: about 0.09 % of a core, a seventh of neuron-top's whole cost
    at a 1 s refresh (docs/rendering.md). This thread sleeps until a key arrives, until a started
    escape sequence is due to time out, or until input is turned off (a byte on a private pipe)."""
    if not PRIVATE or default.__name__ != "LinuxDriver":
        return default
    if _QUIET:
        return _QUIET[0]
    import selectors
    from codecs import getincrementaldecoder

    from textual._parser import ParseError
    from textual._time import get_time
    from textual._xterm_parser import XTermParser
    from textual.drivers.linux_driver import LinuxDriver

    class QuietLinuxDriver(LinuxDriver):
        _wake_w: int | None = None

        def run_input_thread(self) -> None:
            wake_r, self._wake_w = os.pipe()
            selector = selectors.SelectSelector()
            selector.register(self.fileno, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            parser = XTermParser(self._debug)
            decode = getincrementaldecoder("utf-8")().decode
            try:
                while not self.exit_event.is_set():
                    # (a Textual without this attribute gets the 0.1 s period, never a zero timeout)
                    due = getattr(parser, "_timeout_time", get_time() + _POLL_S)
                    timeout = None if due is None else max(0.0, min(_POLL_S, due - get_time()))
                    for key, _mask in selector.select(timeout):
                        if key.fd == wake_r:
                            self.exit_event.wait()  # disable_input() sets it right after waking us
                            break
                        data = decode(os.read(self.fileno, 4096))
                        if not data:  # end of input: stop watching it (it would read as ready forever)
                            selector.unregister(self.fileno)
                            continue
                        for event in parser.feed(data):
                            self.process_message(event)
                    for event in parser.tick():
                        self.process_message(event)
            finally:
                selector.close()
                for fd in (wake_r, self._wake_w):
                    os.close(fd)
                self._wake_w = None
                try:
                    for _event in parser.feed(""):
                        pass
                except (EOFError, ParseError):
                    pass

        def disable_input(self) -> None:
            if self._wake_w is not None and not self.exit_event.is_set():
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass
            super().disable_input()

    _QUIET.append(QuietLinuxDriver)
    return QuietLinuxDriver
