"""The neuron-top Textual app: live (a worker reads the source) or replay (a clock walks a profile).

(About 540 lines, one class: the App's layout, its message handlers, the frame loop and the key
actions all read and write the same state, so splitting it would only pass that state around. The
panes, their machinery, the data path (core/session.py) and Textual's internals live elsewhere.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import psutil
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker

from ..core.analysis.hints import Hint
from ..core.analysis.thresholds import DEFAULTS, Thresholds
from ..core.session import Session
from ..core.store.replay import ReplayClock
from ..core.telemetry.batch import from_samples
from ..core.telemetry.sample import DecodeError, Sample
from ..core.telemetry.sources import Status
from ..core.telemetry.units import clock, plural
from . import textual_compat
from .bars import KeyLegend, TabBar, TimelineBar
from .layout import PRIORITY, TWO_COLUMNS, Box, plan
from .memory_tree import MemoryTree
from .pane import Pane, ReusedLines
from .panels import SPANS, GraphsPane, HealthPane, JobsPane, TrainingPane
from .screens import HelpScreen, JumpScreen
from .state import UiState
from .widgets import CoreGrid, HeaderBar, HintsPane, InterconnectPane, MemoryPane, VcpuPane

REFRESH_STEPS = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0]


# The screen and the containers under the panes: asked for their (unchanging) lines on every update.
class _Screen(ReusedLines, Screen):
    pass


class _Body(ReusedLines, Container):
    """The panes, each placed by layout.plan (absolute boxes): nothing scrolls, nothing overlaps."""

    def on_resize(self) -> None:
        self.app.relayout()  # type: ignore[attr-defined]


class SampleReceived(Message):
    def __init__(self, sample: Sample) -> None:
        super().__init__()
        self.sample = sample


STALE_PERIODS = 3  # report periods without a report before a live source is STALE
STALE_MIN_S = 3.0


class SourceStatus(Message):
    def __init__(self, status: Status) -> None:
        super().__init__()
        self.status = status


class NeuronTopApp(App):
    CSS_PATH = "neurontop.tcss"
    TITLE = "neuron-top"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help"),
        Binding("f", "toggle_flops", "FLOPS on/off"),
        Binding("e", "toggle_engines", "per-engine activity"),
        Binding("p", "pause_display", "pause display"),
        Binding("a", "tab(-1)", "previous tab"),
        Binding("d", "tab(1)", "next tab"),
        Binding("x", "tree_all", "expand/collapse tree"),
        Binding("plus,equals_sign", "refresh_rate(-1)", "faster refresh"),
        Binding("minus", "refresh_rate(1)", "slower refresh"),
        Binding("r", "record", "record on/off"),
        Binding("g", "view('graphs')", "graphs pane"),
        Binding("t", "view('training')", "training pane"),
        Binding("w", "view('jobs')", "jobs pane (one row per runtime)"),
        Binding("m", "view('memory')", "memory pane"),
        Binding("i", "view('interconnect')", "interconnect pane"),
        Binding("h", "view('health')", "health pane (ECC, errors, RAM, swap)"),
        Binding("v", "view('vcpu')", "vCPU pane"),
        Binding("escape", "view(None)", "back to the overview", show=False),
        Binding("b", "time_base", "graphs' time base (1 min, 10 min, all)"),
        Binding("o", "jobs_order", "jobs' order"),
        Binding("comma", "device(-1)", "previous device", show=False),
        Binding("full_stop", "device(1)", "next device", show=False),
        Binding("space", "replay_pause", "pause replay", show=False, priority=True),
        Binding("left_square_bracket", "replay_step(-1)", "one sample back", show=False),
        Binding("right_square_bracket", "replay_step(1)", "one sample forward", show=False),
        Binding("left", "replay_seek(-10)", "10 s back", show=False, priority=True),
        Binding("right", "replay_seek(10)", "10 s forward", show=False, priority=True),
        Binding("j", "replay_jump", "jump to a time", show=False),
        Binding("less_than_sign", "replay_speed(-1)", "halve speed", show=False),
        Binding("greater_than_sign", "replay_speed(1)", "double speed", show=False),
        Binding("home", "replay_edge(0)", "start", show=False, priority=True),
        Binding("end", "replay_edge(1)", "end", show=False, priority=True),
        *[Binding(str(i), f"select_tab({i - 1})", "select that runtime's tab", show=False) for i in range(1, 10)],
    ]

    def __init__(self, source=None, replay: ReplayClock | None = None, source_label: str = "",
                 th: Thresholds = DEFAULTS, refresh_s: float = 1.0, recorder_factory: Callable[[], object] | None = None,
                 show_self: bool = True) -> None:
        # ANSI colours pass through to the terminal (its palette, like htop's) instead of being
        # converted to RGB on every line of every frame, which was a fifth of the drawing cost.
        super().__init__(ansi_color=True)
        self.source = source
        self.replay = replay
        self.source_label = source_label
        self.threshold = th.util_below
        self.refresh_s = refresh_s
        self.recorder_factory = recorder_factory
        self.session = Session(th)
        self.history = self.session.history
        self.hints: list[Hint] = []
        self.latest: Sample | None = None
        self.dirty = False
        self.paused = False
        self.state = UiState.REPLAY if replay else UiState.CONNECTING
        self._last_sample_at: float | None = None
        self.tab = 0
        self.device = 0
        self.bad_lines = 0
        self.show_self = show_self  # snapshot tests turn off the one non-deterministic field
        self.proc = psutil.Process(os.getpid())
        self.first_frame_at: float | None = None
        self._last_tick = time.monotonic()
        log = os.environ.get("NEURON_TOP_LATENCY_LOG")
        self._latency_log = open(log, "a") if log else None  # noqa: SIM115
        self._slow_at = -1e18  # last repaint of the slow panes (memory, vCPU, interconnect, tree)
        self._self_at = -1e18  # last reading of neuron-top's own CPU and RSS
        self._titled_tab = -1  # the tab whose average the grid's title shows
        self.view: str | None = None  # the pane brought up with its key (layout.plan)
        self._boxes: dict[str, Box] = {}
        self._hints_max = 0  # the hints pane's max height, set by relayout

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        # One container holds every pane, each placed by relayout() (no containers per column: each
        # container under a changed line is re-composited every frame).
        with _Body(id="body"):
            yield CoreGrid(id="grid")
            yield GraphsPane(id="graphs")
            yield TrainingPane(id="training")
            yield JobsPane(id="jobs")
            yield MemoryPane(id="memory")
            yield InterconnectPane(id="interconnect")
            yield HealthPane(id="health")
            yield VcpuPane(id="vcpu")
            yield MemoryTree(id="tree")
        yield HintsPane(id="hints")  # outside the scroll area: the answer stays on screen at 80x24
        if self.replay:
            yield TimelineBar(id="timeline")
        yield TabBar(id="tabs")
        yield KeyLegend(replay=self.replay is not None, id="legend")

    def get_default_screen(self) -> Screen:
        return _Screen(id="_default")

    def on_mount(self) -> None:
        self.header = self.query_one(HeaderBar)
        self.header.source = self.source_label
        self.header.state = self.state
        self.header.show_self = self.show_self
        if self.replay is not None:
            self.header.t0 = self.replay.t0  # (the header's time reads as the timeline's)
        self.grid = self.query_one(CoreGrid)
        # Resolved once: the per-frame and per-sample paths below must not walk the DOM.
        self.tab_bar = self.query_one(TabBar)
        self.hints_pane = self.query_one(HintsPane)
        self.graphs = self.query_one(GraphsPane)
        self.training_pane = self.query_one(TrainingPane)
        self.jobs_pane = self.query_one(JobsPane)
        self.health_pane = self.query_one(HealthPane)
        self.mem_tree = self.query_one(MemoryTree)
        self.timeline = self.query_one(TimelineBar) if self.replay else None
        self.memory_pane = self.query_one(MemoryPane)
        self.slow_panes = [self.query_one(p) for p in (VcpuPane, MemoryPane, InterconnectPane)]
        self.hint_targets = {"cores": self.grid, "memory": self.memory_pane,
                             "interconnect": self.query_one(InterconnectPane), "vcpu": self.query_one(VcpuPane)}
        self._apply_size(self.size.width, self.size.height)
        self._self_usage()
        self.header.update_content()
        self._display_timer = self.set_interval(self.refresh_s, self._render_if_dirty)
        if self.replay:
            self._replay_reload()
            self.set_interval(0.05, self._replay_tick)
        elif self.source is not None:
            self._read_source()
            self.set_interval(0.5, self._check_stale)
        self.mem_tree.focus(scroll_visible=False)

    def _check_stale(self) -> None:
        """A source that goes silent (a stopped simulator, a hung neuron-monitor) is STALE after a few
        report periods without a report, not LIVE with frozen numbers."""
        if self._last_sample_at is None or not self.state.live:
            return
        quiet = time.monotonic() - self._last_sample_at  # (since connecting, before the first report)
        period = self.latest.period_s if self.latest is not None else 1.0
        if quiet > max(STALE_PERIODS * period, STALE_MIN_S):
            self.state = UiState.STALE_QUIET
            self.header.note = f"no report for {quiet:.0f} s"
            self.header.state = self.state
            self.header.update_content()

    def on_resize(self, event) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        # (a resize can arrive before on_mount has resolved the panes: query them here)
        # The grid shows every device: the rows left after the header (2), tabs and keys (2), the
        # all-clear hints pane (3) and the grid's borders and NC header (3); fewer: devices share lines.
        self.query_one(CoreGrid).max_rows = max(4, height - 10) if width >= 60 else 0
        self.relayout()

    def relayout(self) -> None:
        """Place the panes (layout.plan) for the body's size, the panes' heights and the asked-for
        pane; a pane a hint points at comes first in the right column when nothing is asked for."""
        body = self.query_one("#body")
        w, h = body.size
        if w <= 0 or h <= 0:
            return
        panes = {str(p.id): p for p in body.children if isinstance(p, Pane)}

        def natural(pid: str, width: int) -> int:
            return panes[pid].natural_height(width)

        # The hints take up to 40 % of a small terminal, or more where the grid leaves the rows
        # (a trn1.2xlarge's grid is 4 rows: at 80x24 its hint's action line stays on screen);
        # the graphs give way first, the grid never.
        sw, sh = self.size
        bars = 4 + (1 if self.replay else 0)  # header, tabs, keys (and the timeline)
        grid = natural("grid", sw if sw < TWO_COLUMNS else sw // 2)
        hints_max = max(3, min(11, max(int(sh * 0.4), sh - bars - grid)))
        if hints_max != self._hints_max:
            self._hints_max = hints_max
            hp = self.query_one(HintsPane)
            hp.styles.max_height = hints_max  # (a body resize calls this again)
            hp.room = hints_max - hp.styles.gutter.height
            if hp.hints:
                hp.update_content()
        view = self.view
        if view is None and w >= TWO_COLUMNS:  # (narrow, the grid stays: the hint names the pane's key)
            view = next((p for p in (self._pane_of(hint.pane) for hint in self.hints) if p), None)
        boxes = plan(w, h, natural, view, asked=self.view is not None)
        if boxes == self._boxes:
            return
        self._boxes = boxes
        for pid, pane in panes.items():
            box = boxes.get(pid)
            pane.display = box is not None
            if box is not None:
                pane.styles.offset = (box.x, box.y)
                pane.styles.width = box.width
                pane.styles.height = box.height

    @staticmethod
    def _pane_of(hint_pane: str) -> str | None:
        """The right-column pane a hint points at (the grid, its "cores", has its place already)."""
        return hint_pane if hint_pane in PRIORITY else None

    # -- live data -------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="source")
    def _read_source(self) -> None:
        worker = get_current_worker()
        session = self.session
        for ev in self.source.events():
            if worker.is_cancelled:
                break
            if isinstance(ev, Status):
                self.post_message(SourceStatus(session.status(ev)))
                continue
            try:
                sample = session.decode(ev.data)  # (and into the recording, if one runs)
            except DecodeError as exc:
                self.post_message(SourceStatus(Status("bad", str(exc))))
                continue
            if session.record_error is not None:  # disk full, file removed: the live view goes on
                why, session.record_error = session.record_error, None
                self.post_message(SourceStatus(Status("record_error", f"recording stopped: {why}")))
            self.post_message(SampleReceived(sample))

    def on_source_status(self, msg: SourceStatus) -> None:
        st = msg.status
        if st.state == "connected":
            self.state = UiState.LIVE if not self.paused else UiState.PAUSED
            self.header.note = ""
            self._last_sample_at = time.monotonic()
        elif st.state == "lost":
            self.state = UiState.STALE_LOST
            self.header.note = st.detail
        elif st.state == "ended":
            self.state = UiState.ENDED
            self.header.note = st.detail + (f"; {plural(self.bad_lines, 'bad report')} skipped" if self.bad_lines else "")
        elif st.state == "bad":
            self.bad_lines += 1
            self.header.note = f"{plural(self.bad_lines, 'bad report')} skipped: {st.detail[:80]}"
        elif st.state in ("error", "record_error", "dropped"):
            self.header.note = st.detail
            if st.state == "record_error":
                self.header.recording = ""
        self.header.state = self.state
        self.header.update_content()

    def on_sample_received(self, msg: SampleReceived) -> None:
        self._ingest(msg.sample)
        if self._latency_log is not None and msg.sample.timestamp is not None:
            # benchmarks/: report written by the simulator -> applied by the UI, in seconds
            self._latency_log.write(f"{time.time() - msg.sample.timestamp:.6f}\n")
            self._latency_log.flush()

    def _ingest(self, s: Sample) -> None:
        self._last_sample_at = time.monotonic()
        if self.state is UiState.STALE_QUIET:
            self.state = UiState.LIVE
            self.header.note = ""
            self.header.state = self.state
        if self.state is UiState.CONNECTING:
            self.state = UiState.LIVE
        self.session.ingest(s)  # history, hints, and the hint events into the recording
        if self.replay is None:
            self.header.t0 = self.session.t0  # live: time from the stream's first report (again after a restart)
        self.hints = self.session.shown
        self.latest = s
        self.dirty = True
        tabs = self.tab_bar
        for rt in s.runtimes:
            if rt[1] not in tabs.tabs:
                tabs.tabs.append(rt[1])
                tabs.refresh()
        if self.first_frame_at is None:
            self._render_if_dirty()

    # -- rendering -------------------------------------------------------------------------------
    def _render_if_dirty(self) -> None:
        if not self.dirty or self.latest is None or (self.paused and self.first_frame_at is not None):
            return
        self.dirty = False
        s = self.latest
        util = s.util
        if self.tab > 0 and self.tab - 1 < len(s.runtime_util):
            util = s.runtime_util[self.tab - 1]
        self.device = min(self.device, max(0, s.n_devices - 1))
        self.grid.selected = self.device
        # Below a 1 s refresh only the grid's bars and the history follow every frame; the slower
        # panes, the grid's average and the header repaint at most once a second (their numbers
        # do not move faster than a person reads). A new tab shows its average at once.
        now = time.monotonic()
        slow = now - self._slow_at >= 0.95 or self.refresh_s >= 1.0 or self.replay is not None
        avg = float(np.mean(util))
        self.grid.set_data(s, util, avg if slow or self._titled_tab != self.tab else None)
        self._titled_tab = self.tab
        self.hints_pane.set_hints(self.hints, avg, self.threshold, self.session.hints.lost)
        if self.replay is not None:  # the graphs end at the cursor: its time, as the timeline writes it
            self.graphs.end_label = clock(self.replay.position)
        self.graphs.set_history(self.history, s, self.device)
        if slow:
            self._slow_at = now
            # The tab's runtime (the jobs pane marks it; the memory pane shows its devices only).
            tab = self.tab_bar.tabs[self.tab] if 0 < self.tab < len(self.tab_bar.tabs) else None
            self.jobs_pane.active_tag = tab
            job = next((j for j in s.jobs if j.tag == tab), None)
            self.memory_pane.only = (job.tag, job.cores) if job is not None else None
            for pane in self.slow_panes:
                pane.set_sample(s)
            self.mem_tree.set_sample(s)
            self.training_pane.set_history(self.history, s)
            self.jobs_pane.set_history(self.history, s)
            self.health_pane.set_history(self.history, s)
            self.relayout()
        panes = {h.pane for h in self.hints}
        for key, widget in self.hint_targets.items():
            widget.set_class(key in panes, "hinted")
        # The header's training figures follow the slow panes; a change of state shows at once.
        if slow or self.header.state != self.state or self.header.sample is None:
            self.header.sample = s
            self.header.state = self.state
            self._self_usage()
            self.header.update_content()
        tl = self.timeline
        if self.replay and tl is not None:
            tl.pos, tl.duration, tl.speed = self.replay.position, self.replay.duration, self.replay.speed
            tl.paused, tl.at_end = self.replay.paused, self.replay.at_end
            tl.refresh()
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()
            if os.environ.get("NEURON_TOP_FIRST_FRAME_MARK"):
                with open(os.environ["NEURON_TOP_FIRST_FRAME_MARK"], "w") as f:
                    f.write(f"{time.time():.6f}\n")

    def _self_usage(self) -> None:
        """neuron-top's own CPU and RSS, read at most every 2 s inside a frame (not a frame of its own);
        the caller redraws the header."""
        now = time.monotonic()
        if now - self._self_at < 2.0:
            return
        self._self_at = now
        try:
            self.header.self_cpu = self.proc.cpu_percent(None)
            self.header.self_rss = self.proc.memory_info().rss
        except psutil.Error:
            return

    # -- replay ----------------------------------------------------------------------------------
    def _replay_tick(self) -> None:
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        r = self.replay
        assert r is not None
        passed = r.advance(dt)
        if len(passed) > 200:  # far jump at high speed: rebuild instead of feeding every sample
            self._replay_reload()
            return
        for i in passed:
            self._ingest(r.tl.sample(i))
        if r.at_end and self.state is not UiState.REPLAY_END:
            self.state = UiState.REPLAY_END
            self.dirty = True
        elif passed or self.dirty:
            self.state = UiState.PAUSED if r.paused else UiState.REPLAY
        if passed:
            self._render_if_dirty()

    def _replay_reload(self) -> None:
        """After a seek: rebuild history and hint state from the samples before the position."""
        r = self.replay
        assert r is not None
        self.session.reset()
        self.latest = None
        start = max(0, r.index - 600)
        before = [r.tl.sample(i) for i in range(start, r.index + 1)]
        for s in before:
            self.history.add(s)
            self.latest = s
        self.history.whole = start == 0  # (its totals count from `start`, not from the profile's first report)
        for b in from_samples(before):
            self.session.hints.feed(b)
        self.session.latest = self.latest
        self.hints = self.session.shown
        self.state = UiState.REPLAY_END if r.at_end else (UiState.PAUSED if r.paused else UiState.REPLAY)
        self.dirty = True
        self._render_if_dirty()

    # -- actions ---------------------------------------------------------------------------------
    def get_driver_class(self):
        return textual_compat.quiet_driver(super().get_driver_class())

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # Replay keys exist only in replay; live, the focused widget (the tree) gets them.
        if action.startswith("replay_") and self.replay is None:
            return False
        return True

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.BINDINGS, replay=self.replay is not None))

    def action_toggle_flops(self) -> None:
        self.grid.show_flops = not self.grid.show_flops
        self.relayout()

    def action_toggle_engines(self) -> None:
        self.grid.show_engines = not self.grid.show_engines
        self.relayout()

    def action_pause_display(self) -> None:
        if self.replay:
            self.action_replay_pause()
            return
        self.paused = not self.paused
        self.state = UiState.PAUSED if self.paused else (UiState.LIVE if self.state is UiState.PAUSED else self.state)
        self.header.state = self.state
        self.header.update_content()
        if not self.paused:
            self.dirty = True
            self._render_if_dirty()

    def action_tab(self, delta: int) -> None:
        self.action_select_tab((self.tab_bar.active + delta) % len(self.tab_bar.tabs))

    def action_select_tab(self, index: int) -> None:
        tabs = self.tab_bar
        if 0 <= index < len(tabs.tabs):
            tabs.active = self.tab = index
            tabs.refresh()
            self.dirty = True
            self._render_if_dirty()

    def action_view(self, view: str | None) -> None:
        """Bring a pane up (its key again, or escape, goes back to the overview)."""
        self.view = None if view == self.view else view
        self.relayout()

    def action_time_base(self) -> None:
        i = SPANS.index(self.graphs.span_s) if self.graphs.span_s in SPANS else 0
        self.graphs.span_s = SPANS[(i + 1) % len(SPANS)]
        self.graphs.redraw()
        self.dirty = True
        self._render_if_dirty()

    def action_jobs_order(self) -> None:
        self.jobs_pane.sort = (self.jobs_pane.sort + 1) % len(self.jobs_pane.SORTS)
        self.jobs_pane.update_content()

    def action_tree_all(self) -> None:
        self.mem_tree.toggle_all()
        self.dirty = True
        self._render_if_dirty()

    def action_refresh_rate(self, delta: int) -> None:
        i = min(range(len(REFRESH_STEPS)), key=lambda k: abs(REFRESH_STEPS[k] - self.refresh_s))
        self.refresh_s = REFRESH_STEPS[min(len(REFRESH_STEPS) - 1, max(0, i + delta))]
        self._display_timer.stop()
        self._display_timer = self.set_interval(self.refresh_s, self._render_if_dirty)
        self.header.note = f"refresh every {self.refresh_s:g} s"
        self.header.update_content()

    def action_device(self, delta: int) -> None:
        self.grid.move(delta)

    def on_core_grid_device_selected(self, msg: CoreGrid.DeviceSelected) -> None:
        self.device = msg.device
        self.dirty = True
        self._render_if_dirty()

    def on_key(self, event) -> None:
        if self.focused is self.grid and event.key in ("up", "down"):
            self.grid.move(-1 if event.key == "up" else 1)
            event.stop()

    @property
    def recorder(self):
        return self.session.recorder

    @recorder.setter
    def recorder(self, rec) -> None:
        self.session.recorder = rec

    def action_record(self) -> None:
        if self.replay is not None or self.recorder_factory is None:
            self.header.note = "recording is available in live mode"
            self.header.update_content()
            return
        if self.recorder is not None:
            rec, self.recorder = self.recorder, None
            self._close_recorder(rec)
            self.header.recording = ""
            self.header.note = f"saved {rec.path}"
        else:
            try:
                self.recorder = self.recorder_factory()
                self.header.recording = self.recorder.path
            except Exception as exc:  # unwritable folder, full disk: say so, keep the live view
                self.header.note = f"cannot record: {exc}"
        self.header.update_content()

    def action_replay_pause(self) -> None:
        if self.replay:
            self.replay.paused = not self.replay.paused
            self.state = UiState.PAUSED if self.replay.paused else UiState.REPLAY
            self.dirty = True
            self._render_if_dirty()

    def action_replay_step(self, n: int) -> None:
        if self.replay:
            self.replay.paused = True
            self.replay.step(n)
            self._replay_reload()

    def action_replay_seek(self, seconds: float) -> None:
        if self.replay:
            self.replay.seek_relative(seconds)
            self._replay_reload()

    def action_replay_speed(self, direction: int) -> None:
        if self.replay:
            (self.replay.faster if direction > 0 else self.replay.slower)()
            self.dirty = True
            self._render_if_dirty()

    def action_replay_edge(self, which: int) -> None:
        if self.replay:
            (self.replay.end if which else self.replay.home)()
            self._replay_reload()

    def action_replay_jump(self) -> None:
        replay = self.replay
        if replay:
            def done(t: float | None) -> None:
                if t is not None:
                    replay.seek(replay.t0 + t)
                    self._replay_reload()

            self.push_screen(JumpScreen(lambda: replay.position), done)

    @staticmethod
    def _close_recorder(rec) -> None:
        """Every sample is committed already; closing compacts the last ones (a second or two for
        large reports), so it runs off the UI thread. Not a daemon: the process waits for it."""
        rec.flush()
        threading.Thread(target=rec.close, name="ntprof-close").start()

    async def action_quit(self) -> None:
        if self.recorder is not None:
            self._close_recorder(self.recorder)
            self.recorder = None
        if self.source is not None:
            self.source.close()
        self.exit()


__all__ = ["NeuronTopApp", "SampleReceived", "SourceStatus"]


class NodeApp(NeuronTopApp):
    """One node of the cluster view (`neuron-top --connect ADDR --escape-quits`): escape goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(b for b in NeuronTopApp.BINDINGS if not (isinstance(b, Binding) and b.key == "escape")),
        Binding("escape", "back", "back to the overview, then to the cluster")]

    async def action_back(self) -> None:
        if self.view is not None:
            self.action_view(None)
        else:
            await self.action_quit()
