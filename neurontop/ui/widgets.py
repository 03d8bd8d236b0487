"""The panes: header, cores, history, vCPUs, memory, interconnect and hints. The machinery they
share is in pane.py; the memory tree and the bars (tabs, keys, timeline) have modules of their own."""

from __future__ import annotations

import os

import numpy as np
from rich.segment import Segment
from rich.text import Text
from textual.events import Click
from textual.message import Message
from textual.reactive import reactive

from ..core.analysis.hints import Hint
from ..core.telemetry.fields import ENGINE_NAMES
from ..core.telemetry.sample import MEM_LABELS, Sample
from ..core.telemetry.units import clock
from .pane import Pane, style_of
from .render import (
    SPARK,
    bar,
    bar_segments,
    fill_style,
    human_bytes,
    human_count,
    human_rate,
    level_style,
    util_style,
)
from .state import UiState


class HeaderBar(Pane):
    """Two lines: what is shown and its state; training figures and neuron-top's own usage."""

    DEFAULT_CSS = "HeaderBar { height: 2; }"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.sample: Sample | None = None
        self.source = ""
        self.state = UiState.CONNECTING
        self.self_cpu = 0.0
        self.self_rss = 0
        self.recording = ""
        self.note = ""
        self.show_self = True
        self.t0: float | None = None  # the stream's start: times read from it, as the replay timeline does

    def build(self) -> Text:
        s = self.sample
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" neuron-top ", style="bold reverse")
        state_style = self.state.style
        t.append(" ")
        t.append(f" {self.state.label} ", style=state_style + " reverse")
        if self.recording:
            t.append(" ")
            t.append(" REC ", style="bold white on red")
            t.append(f" {os.path.basename(self.recording)}", style="red")  # (the folder is --record-dir)
        if s:
            dev = s.device_type or "neuron device"
            t.append(f" {s.instance_type or 'unknown instance'} · {s.n_devices}x {dev}"
                     f" ({s.n_cores} cores{', NC-' + s.core_version if s.core_version else ''})")
        t.append(f" · {_elide_middle(self.source, self.size.width - t.cell_len - 3)}", style="dim")
        line1, t = t, Text(no_wrap=True, overflow="ellipsis")
        tr = s.training if s else None
        if tr is not None:
            t.append(f" step {tr.step}", style="bold")
            if tr.loss is not None:
                t.append(f" · loss {tr.loss:.3f}" + (" (proxy)" if tr.loss_source == "proxy" else ""))
            t.append(f" · {human_count(tr.tokens_per_s)} tok/s · MFU {tr.mfu * 100:.1f}%")
            t.append(f" · {tr.workload} {tr.dtype}", style="dim")
        elif s is not None:
            t0 = self.t0 if self.t0 is not None else s.time_s
            t.append(f" {clock(s.time_s - t0)} · {s.executions} executions", style="bold")
            if s.latency_p50:
                t.append(f" · latency p50 {s.latency_p50 * 1e3:.1f} ms")
        if self.note:
            t.append(f" · {self.note}", style="yellow")
        if self.show_self:
            t.append(f"   self CPU {self.self_cpu:.1f}% RSS {self.self_rss / 2**20:.0f} MiB", style="dim")
        return Text("\n", no_wrap=True, overflow="ellipsis").join([line1, t])


def _elide_middle(label: str, room: int) -> str:
    """A source label cut in its middle, not at its end: a socket's or file's name is what tells
    nodes and runs apart ("socket …/cl/node-05.sock")."""
    if len(label) <= room or room <= 0:
        return label
    kind, _, rest = label.partition(" ")
    keep = room - len(kind) - 2
    return f"{kind} …{rest[-keep:]}" if keep > 8 else label


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
        self.max_rows = 0  # device rows the screen has room for (0: as many as there are devices)

    def per_line(self) -> int:
        """Devices per line: one, or several when the terminal is too short for a row each (80x24
        shows all 16 devices of a trn1.32xlarge as 8 lines of two)."""
        n = self.sample.n_devices if self.sample is not None else 1
        return 1 if not self.max_rows or n <= self.max_rows else -(-n // self.max_rows)

    def set_data(self, sample: Sample, util: np.ndarray, avg: float | None) -> None:
        """The grid, and `avg` (the utilisation's mean) in its title; None keeps the title as it is
        (below a 1 s refresh it follows the once-a-second panes: a new title is a redrawn border)."""
        self.sample = sample
        self.util = util
        if avg is not None:
            cv = sample.core_version or ""
            self.set_title(f"NeuronCore {cv + ' ' if cv else ''}Utilization (Avg: {avg:.2f}%)")
        self.update_content()

    def shape_key(self) -> tuple:
        return (*super().shape_key(), self.show_engines, self.show_flops, self.max_rows)

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
        k = self.per_line()
        group = max(1, (self.size.width - 2) // k)
        row = (event.y - 1) * k + min(k - 1, max(0, event.x - 1) // group)  # first content row: the NC header
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
        k = self.per_line()
        group_w = width // k
        label_w = 5
        cell = max(2, (group_w - label_w - (1 if k > 1 else 0)) // cpd)
        num_w = 6
        bar_w = max(0, cell - num_w - 2)
        if bar_w < 3:
            bar_w = 0
        bold, sel = style_of("bold"), style_of("reverse bold")
        head: list[Segment] = []
        for _ in range(k):
            head += [Segment(" " * label_w)] + [Segment((f"NC{c}" if cell >= 4 else str(c)).ljust(cell)[:cell], bold)
                                                for c in range(cpd)]
            if k > 1:
                head.append(Segment(" " * (group_w - label_w - cell * cpd)))
        lines = [head]
        peak = s.core_peak_flops
        segs: list[Segment] = []
        for d in range(s.n_devices):
            if d % k == 0:
                segs = []
                lines.append(segs)
            segs.append(Segment(f"ND{d}".ljust(label_w), sel if d == self.selected else bold))
            for c in range(cpd):
                i = d * cpd + c
                if i >= len(u):
                    break
                pct = float(u[i])
                st = style_of(util_style(pct))
                if self.show_flops:
                    if s.flops is None:
                        val, frac = "n/a", 0.0
                    else:
                        val = f"{float(s.flops[i]) / 1e12:5.1f}T"
                        frac = float(s.flops[i]) / peak if peak else 0.0
                else:
                    val, frac = f"{pct:5.1f}%", pct / 100
                if cell < num_w:  # too narrow for a number: a block whose height and colour are the level
                    segs.append(Segment(SPARK[min(8, max(1, int(frac * 8 + 0.5)))] * (cell - 1) + " ", st))
                    continue
                used = num_w
                if bar_w:
                    segs += bar_segments(frac, bar_w, st, gap=1)  # (the gap rides on the track)
                    used += bar_w + 1
                segs.append(Segment(val.rjust(num_w), st))
                if cell > used:
                    segs.append(Segment(" " * (cell - used)))
            if k > 1 and d % k < k - 1:  # (a device's block is label_w + cpd x cell wide)
                segs.append(Segment(" " * max(0, group_w - label_w - cell * cpd)))
        if self.show_flops and s.flops is None:
            lines.append([Segment(" this telemetry has no flops field", style_of("dim"))])
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
                out.append_text(bar(f, bar_w, util_style(f * 100)))
                out.append(f"{f * 100:6.1f}% ")
        return out


class VcpuPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "vCPU Utilization"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        bar_w = max(10, self.size.width - 36)
        bold = style_of("bold")
        lines = [
            [Segment("System vCPU  ", bold),
             *bar_segments((s.sys_user + s.sys_system) / 100, bar_w, style_of("green")),
             Segment(f" [{s.sys_user:5.2f}%,{s.sys_system:5.2f}%]")],
            [Segment("Runtime vCPU ", bold),
             *bar_segments((s.runtime_user + s.runtime_system) / 100, bar_w, style_of("cyan")),
             Segment(f" [{s.runtime_user:5.2f}%,{s.runtime_system:5.2f}%]")],
        ]
        if len(s.vcpu_busy):
            hot = np.argsort(-s.vcpu_busy)[: max(1, min(8, (self.size.width - 14) // 9))]
            line = [Segment("busiest     ", bold)]
            for i in hot.tolist():
                b = float(s.vcpu_busy[i])
                line.append(Segment(f"{i}:{b:3.0f}% ", style_of(level_style(b))))
            line.append(Segment(f" of {len(s.vcpu_busy)}", style_of("dim")))
            lines.append(line)
        return lines


class MemoryPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Memory Usage Summary"
        self.only: tuple[str, tuple[int, ...]] | None = None  # (tag, cores): the tab's runtime's devices only

    CELL = 27  # one device's bar and figures; wide panes put several devices on a line

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        bold = style_of("bold")
        hm = s.host_mem
        tot = s.mem.sum(axis=0)
        lines = [
            [Segment("Host   ", bold), Segment(
                f"Total {human_bytes(sum(hm))}  Tensors {human_bytes(hm[3])}  Constants {human_bytes(hm[1])}  "
                f"DMA Buffers {human_bytes(hm[2])}  App. Memory {human_bytes(hm[0])}")],
            [Segment("Device ", bold), Segment(f"Total {human_bytes(tot.sum())}  " + "  ".join(
                f"{lab} {human_bytes(tot[k])}" for k, lab in enumerate(MEM_LABELS)))],
        ]
        if s.host_mem_total > 0:  # ("Host Total" above is the runtimes' own, as AWS neuron-top shows it)
            used = s.host_mem_used
            lines.insert(1, [Segment("RAM    ", bold), Segment(
                f"{human_bytes(used)} of {human_bytes(s.host_mem_total)} used on the host "
                f"({used / s.host_mem_total * 100:.0f} %)", style_of(fill_style(used / s.host_mem_total * 100)))])
        dm = s.device_mem()
        cap = s.hbm_capacity
        cap_text = human_bytes(cap) if cap else "?"
        per_line = max(1, width // self.CELL) if len(dm) > 1 else 1
        cell = width // per_line
        text_w = 2 + 2 * max(len(cap_text), 6)  # " 16.5GB/32.0GB"
        bar_w = max(4, cell - 5 - text_w - 1)
        line: list[Segment] = []
        shown: list[int] | range = range(len(dm))
        if self.only is not None:  # the tab's runtime: the devices holding its cores
            cpd = max(1, s.cores_per_device)
            shown = sorted({c // cpd for c in self.only[1] if c // cpd < len(dm)})
        self.set_title(f"Memory Usage Summary{f' · runtime {self.only[0]} ({len(shown)} devices)' if self.only else ''}")
        for k, d in enumerate(shown):
            used = dm[d]
            if k % per_line == 0:
                line = []
                lines.append(line)
            frac = used / cap if cap else 0.0
            text = f" {human_bytes(used)}/{cap_text}"
            line.append(Segment(f"ND{d:<3}", bold))
            line += bar_segments(frac, bar_w, style_of(fill_style(frac * 100)))
            line.append(Segment(text.ljust(cell - 5 - bar_w)))
        return lines


class InterconnectPane(Pane):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.border_title = "Interconnect (NeuronLink, collectives, EFA)"

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        s = self.sample
        if s is None:
            return None
        dim, bold = style_of("dim"), style_of("bold")
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
                line += bar_segments(frac, 5, style_of(level_style(frac * 100)))
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
    FAST_FRAME = False  # it rarely changes
    room = 9  # content rows the layout gives the pane (app.relayout: its max height less the border)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.hints: list[Hint] = []
        self._key: tuple = ()
        self.util: float | None = None  # None: no report yet
        self.threshold = 70.0
        self.lost: dict[str, float] = {}
        self.border_title = "Why below 70 %? (hints)"

    def set_hints(self, hints: list[Hint], util: float, threshold: float, lost: dict[str, float] | None = None) -> None:
        # What the pane shows depends on these only: most frames change none of them (hints are
        # evaluated once a second), and then the pane is not rebuilt at all.
        below = not hints and util < threshold
        lost_key = tuple((c, round(v)) for c, v in (lost or {}).items()) if hints else ()
        key = (tuple(hints), threshold, util >= threshold, round(util, 1) if below else None, lost_key,
               self.content_region.width, self.room)
        if key == self._key and self._lines:
            return
        self.hints, self.util, self.threshold, self.lost = hints, util, threshold, dict(lost or {})
        title = f"Hints (threshold {threshold:.0f} %)"
        if self.border_title != title:  # setting it repaints the whole pane, even to the same text
            self.border_title = title
        self._key = key
        self.update_content()

    def build(self):
        if self.util is None:
            return Text("… waiting for the first report", style="dim")
        if not self.hints:
            if self.util >= self.threshold:
                # No live number here: the grid's title has it, and a line that changes every
                # frame at the bottom of the screen makes Textual repaint everything in between.
                return Text(f"✓ average utilisation ≥ {self.threshold:.0f} %: no bottleneck to explain",
                            style="green")
            return Text(f"… utilisation {self.util:.1f} % < {self.threshold:.0f} % (confirming for a few seconds)",
                        style="yellow")
        # Whole hints while they fit the pane's rows (the first always), then one line naming the
        # rest: a hint is never cut off below the pane's edge unseen. The time-loss line goes
        # first when even one hint does not fit with it.
        width = max(1, self.content_region.width)
        head = Text()
        if self.lost and any(h.kind == "bottleneck" for h in self.hints):
            total = sum(self.lost.values())
            parts = " · ".join(f"{c.replace('_', ' ')} {v:.0f}" for c, v in self.lost.items())
            head.append(f"of the {total:.0f} % lost: {parts}", style="dim")
        out, rows = self._fill(head, width)
        if rows > self.room and head:
            out, rows = self._fill(Text(), width)
        return out

    def _fill(self, head: Text, width: int) -> tuple[Text, int]:
        out, shown = head, 0
        for k, h in enumerate(self.hints):
            trial = out.copy()
            if trial:
                trial.append("\n")
            trial.append_text(_hint_text(h))
            if k and self._rows(trial, width) + (1 if k + 1 < len(self.hints) else 0) > self.room:
                break
            out, shown = trial, k + 1
        rest = self.hints[shown:]
        if rest:
            more = Text(f"+{len(rest)} more: " + " · ".join(h.title for h in rest) + " (`diagnose` lists every hint)",
                        style="dim")
            more.truncate(width, overflow="ellipsis")
            out.append("\n")
            out.append_text(more)
        return out, self._rows(out, width)

    def _rows(self, text: Text, width: int) -> int:
        return len(text.wrap(self.app.console, width))


def _hint_text(h: Hint) -> Text:
    sev = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}[h.severity]
    out = Text()
    out.append("● ", style=sev)
    out.append(h.title, style="bold")
    out.append(f"  [{h.kind}, {h.severity}, confidence {h.confidence:.0%}]", style="dim")
    out.append("\n  " + " · ".join(e.text() for e in h.evidence[:4]), style="")
    out.append("\n  → " + h.action, style="italic")
    return out
