"""The panes beyond AWS neuron-top's: graphs of the history, training progress, the jobs (one row per
runtime, nvitop's process table) and hardware health. Each reads the Sample and the session's History;
none keeps figures of its own."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from rich.segment import Segment

from ..core.analysis.history import History, Ring
from ..core.telemetry.sample import Sample
from ..core.telemetry.units import clock
from .charts import SCALE_W, chart, columns, span_label, time_axis
from .pane import Pane, style_of
from .render import fill_style, human_bytes, human_count, level_style, sparkline, util_style

NOT_HERE = "not in this telemetry"
SPANS = (60.0, 600.0, 0.0)  # the graphs' time bases: 1 min, 10 min, everything the history keeps


class GraphsPane(Pane):
    """The history as block charts with a scale and a time axis, as many as the pane's height holds
    (one-line sparklines when it is short). Utilisation shows the average as bars over the cores'
    min-max band."""

    WAITING = "no history yet"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.history: History | None = None
        self.device = 0
        self.span_s = SPANS[0]
        self.end_label = "now"
        self._drawn_at = -1e18  # the stream time of the sample the graphs were last drawn for
        self.border_title = "Graphs"

    def set_history(self, history: History, sample: Sample, device: int) -> None:
        # A chart moves by whole columns: redraw when time has moved by one (a column is 0.6 s of a
        # 1 min base on 100 cells), not on every frame of a fast refresh; a new device at once.
        col_s = (self.span_s or 600.0) / max(1, self.size.width - SCALE_W)
        same = device == self.device and self.history is history and self.sample is not None
        self.history, self.sample, self.device = history, sample, device  # (what a rebuild draws)
        if same and 0 <= sample.time_s - self._drawn_at < col_s:
            return
        self._drawn_at = sample.time_s
        self.update_content()

    def redraw(self) -> None:
        """Draw at the next set_history whatever the time (a new time base)."""
        self._drawn_at = -1e18

    def _series(self, h: History) -> list[tuple[str, np.ndarray, object, tuple | None]]:
        r = h.rings
        dev = h.device_util.get(self.device)
        return [
            ("utilisation, average (░ min-max of the cores)", r["util_avg"].values(), util_style,
             (r["util_min"].values(), r["util_max"].values())),
            (f"utilisation, ND{self.device}", dev.values() if dev is not None else np.zeros(0), util_style, None),
            ("HBM bandwidth", r["hbm_bw_frac"].values(), level_style, None),
            ("NeuronLink (mean of links)", r["link_frac"].values(), level_style, None),
            ("EFA", r["efa_frac"].values(), level_style, None),
            ("host CPU", r["host_cpu"].values(), level_style, None),
        ]

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        h = self.history
        if h is None or not len(h.rings["util_avg"]):
            return None
        times = h.rings["time_s"].values()
        t_end = float(times[-1])
        # everything kept: from the first report's period (its start) to the last
        span = self.span_s or max(1.0, t_end - float(times[0]) + (float(times[1] - times[0]) if len(times) > 1 else 1.0))
        self.set_title(f"Graphs · last {span_label(span)} (b: time base)")
        series = self._series(h)
        present = [s for s in series if len(s[1]) == len(times) and np.isfinite(s[1]).any()]
        absent = [s[0].split(",")[0].split(" (")[0] for s in series if s not in present]
        rows = max(1, self.size.height)  # (the content height: size excludes the border)
        bold, dim = style_of("bold"), style_of("dim")
        foot = [[Segment(f"{NOT_HERE}: {', '.join(absent)}", dim)]] if absent else []
        k = len(present)

        def room(k: int) -> int:  # rows for k charts: less the time axis, the foot, and "taller for" if some wait
            return rows - len(foot) - 1 - (1 if k < len(present) else 0)
        while k and room(k) // k < 5:  # a chart needs its title and four rows at least (0, 50, 100 %)
            k -= 1
        if k == 0:
            return (self._sparklines(present, width) + foot)[:rows]
        avail = room(k)
        sizes = [avail // k + (1 if i < avail % k else 0) for i in range(k)]  # (the spare rows: the first)
        plot_w = max(4, width - SCALE_W)
        lines: list[list[Segment]] = []
        axis = style_of("dim")
        for (name, vals, colour, band), per in zip(present[:k], sizes, strict=True):
            cols = columns(times, vals, t_end, span, plot_w)
            last = float(vals[-1]) if np.isfinite(vals[-1]) else float("nan")
            head = f"{name}" + (f"  {last:.1f}%" if np.isfinite(last) else "")
            lines.append([Segment(head, bold)])
            b = None
            if band is not None:
                b = (columns(times, band[0], t_end, span, plot_w), columns(times, band[1], t_end, span, plot_w))
            lines += chart(cols, per - 1, 100.0, style_of(colour(last if np.isfinite(last) else 0.0)), axis,  # type: ignore[operator]
                           band=b, band_style=dim)
        lines.append(time_axis(plot_w, span, axis, self.end_label))
        if k < len(present):
            foot.insert(0, [Segment(f"taller for: {', '.join(s[0].split(',')[0] for s in present[k:])}", dim)])
        return lines + foot

    def _sparklines(self, present: list, width: int) -> list[list[Segment]]:
        spark_w = max(10, width - 20)
        bold = style_of("bold")
        out = []
        for name, vals, colour, _ in present:
            short = name.replace("utilisation, average (░ min-max of the cores)", "util avg") \
                .replace("utilisation, ", "util ").replace(" (mean of links)", "").replace(" bandwidth", " bw")
            v = vals[-spark_w:]
            last = float(v[-1]) if len(v) and np.isfinite(v[-1]) else float("nan")
            ok = np.isfinite(last)
            out.append([Segment(f"{short[:11]:<12}", bold),
                        Segment(sparkline(v, spark_w, 0.0, 100.0), style_of(colour(last if ok else 0))),
                        Segment(f" {last:5.1f}%" if ok else "      -")])
        return out


class _HistoryPane(Pane):
    """A pane drawn from the latest sample and the session's History."""

    TITLE = ""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.history: History | None = None
        self.border_title = self.TITLE

    def set_history(self, history: History, sample: Sample) -> None:
        self.history, self.sample = history, sample
        self.update_content()

    def segment_lines(self, width: int) -> list[list[Segment]] | None:
        if self.sample is None or self.history is None:
            return None
        return self.lines(self.sample, self.history, width)

    def lines(self, s: Sample, h: History, width: int) -> list[list[Segment]]:
        raise NotImplementedError


class TrainingPane(_HistoryPane):
    """Training progress: the latest figures, their history as sparklines with their range, and the
    step's time breakdown when the telemetry carries one."""

    TITLE = "Training"

    def lines(self, s: Sample, h: History, width: int) -> list[list[Segment]]:
        bold, dim = style_of("bold"), style_of("dim")
        tr = s.training
        lines: list[list[Segment]] = []
        rows: list[tuple[str, Ring, Callable[[float], str]]]
        if tr is None:
            lines.append([Segment(f"step, loss, tokens/s, MFU: {NOT_HERE} (neuron-monitor counts executions, "
                                  "not steps)", dim)])
            rows = [("executions/s", h.rings["executions_per_s"], "{:.1f}".format)]
        else:
            loss = f" · loss {tr.loss:.3f}" if tr.loss is not None else ""
            st = f"{tr.step_time_s.p50:.2f} s (p50)" if tr.step_time_s.p50 else "- (no step completed yet)"
            lines.append([Segment(f"step {tr.step}{loss} · step time {st} · {tr.workload} {tr.dtype}", bold)])
            rows = [("step time s", h.rings["step_time_s"], "{:.2f}".format),
                    ("tokens/s", h.rings["tokens_per_s"], human_count),
                    ("MFU %", h.rings["mfu"], "{:.1f}".format), ("loss", h.rings["loss"], "{:.3f}".format)]
        spark_w = max(8, width - 13 - 26)
        for name, ring, fmt in rows:
            v = ring.values(spark_w)
            fin = v[np.isfinite(v)]
            if not len(fin):
                lines.append([Segment(f"{name:<13}", bold), Segment("not reported yet" if tr is not None else NOT_HERE,
                                                                    dim)])
                continue
            lo, hi = float(fin.min()), float(fin.max())
            f = fmt
            lines.append([Segment(f"{name:<13}", bold), Segment(sparkline(v, spark_w, lo - (hi - lo) * 0.1 if hi > lo
                                                                           else 0.0, hi), style_of("cyan")),
                          Segment(f" {f(float(fin[-1])):>7} {f(lo)}–{f(hi)}")])
        lines.append(self._breakdown(s, h))
        return lines

    BREAKDOWN_S = 60.0  # the breakdown's window: several steps of most jobs, and what the graphs show first

    def _breakdown(self, s: Sample, h: History) -> list[Segment]:
        """Where the last minute went: compute (the cores' busy share), collectives on the critical
        path, the wait for input, and the rest (host gaps: the device idle for none of those).
        A mean over reports: one report can fall inside a single phase of a step."""
        bold, dim = style_of("bold"), style_of("dim")
        head = Segment(f"last {span_label(self.BREAKDOWN_S)} ", bold)
        if not s.has_extension:
            return [head, Segment(f"compute / comm / input / host: {NOT_HERE} (the simulator's extension or "
                                  "neuron-profile)", dim)]
        t = h.rings["time_s"].values()
        keep = t > t[-1] - self.BREAKDOWN_S

        def mean(ring: str, scale: float = 1.0) -> float:
            v = h.rings[ring].values()[keep]
            v = v[np.isfinite(v)]
            return float(v.mean()) * scale if len(v) else 0.0

        compute, comm, wait = mean("util_avg", 0.01), mean("comm_frac"), mean("input_frac")
        other = max(0.0, 1.0 - compute - comm - wait)
        out = [head]
        for name, v, colour in (("compute", compute, "green"), ("comm", comm, "yellow"), ("input", wait, "magenta"),
                                ("host gaps", other, "red")):
            out.append(Segment(f"{name} {v * 100:.0f}% ", style_of(colour)))
        return out


def _span(s: Sample, h: History) -> str:
    """What the totals count: since the stream's start, or (a replay that jumped) over the reports
    it rebuilt them from."""
    since = h.partial_since
    if since is None:
        return "since start"
    sec = s.time_s - since
    return f"in the last {round(sec / 60)} min" if sec >= 90 else f"in the last {round(sec)} s"


def _seen(s: Sample, h: History, pid: int) -> str:
    """How long the stream has seen a runtime; at least that (≥) when it was there before the
    reports the history holds (a replay that jumped)."""
    first = h.first_seen.get(pid, s.time_s)
    since = h.partial_since
    return ("≥" if since is not None and first <= since else "") + clock(s.time_s - first)


class JobsPane(_HistoryPane):
    """One row per runtime (neuron-monitor's neuron_runtime_data): pid, tag, cores held, device and
    host memory, vCPU, execution errors, and how long the stream has seen it. `o` changes the order."""

    SORTS = ("pid", "cores", "device memory", "cpu")
    TITLE = "Jobs (runtimes)"

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.sort = 0
        self.active_tag: str | None = None  # the tab bar's runtime (None: all)

    def lines(self, s: Sample, h: History, width: int) -> list[list[Segment]]:
        bold, dim = style_of("bold"), style_of("dim")
        if not s.jobs:
            return [[Segment("no runtime in this report: no job holds a NeuronCore", dim)]]
        key = self.SORTS[self.sort]
        jobs = sorted(s.jobs, key=lambda j: {"pid": j.pid, "cores": -len(j.cores), "device memory": -j.device_bytes,
                                             "cpu": -j.cpu_pct}[key])
        # The columns that fit, in this order (nvitop's: the process, its device share, then the host's).
        cols = [("PID", 8, lambda j: str(j.pid)), ("TAG", 10, lambda j: j.tag[:10]),
                ("CORES", 9, lambda j: _ranges(j.cores)[:9]), ("DEV MEM", 9, lambda j: human_bytes(j.device_bytes)),
                ("CPU", 6, lambda j: f"{j.cpu_pct:.1f}%"), ("SEEN", 9, lambda j: _seen(s, h, j.pid)),
                ("HOST MEM", 9, lambda j: human_bytes(j.host_bytes)), ("ERR", 4, lambda j: str(j.errors))]
        used, fit = 2, []
        for c in cols:
            if used + c[1] + 1 > width:
                break
            fit.append(c)
            used += c[1] + 1
        head = "  " + " ".join(f"{n:<{w}}" if n in ("TAG", "CORES") else f"{n:>{w}}" for n, w, _ in fit)
        self.set_title(f"{self.TITLE} · by {key} (o)")
        lines = [[Segment(head, bold)]]
        for j in jobs:
            mark = "▶ " if self.active_tag == j.tag else "  "
            row = mark + " ".join(f"{get(j):<{w}}" if n in ("TAG", "CORES") else f"{get(j):>{w}}" for n, w, get in fit)
            lines.append([Segment(row, style_of("red") if j.errors else style_of(""))])
        lines.append([Segment("1-9, a/d: the grid shows one runtime's cores (▶)", dim)])
        return lines


class HealthPane(_HistoryPane):
    """Hardware and host health: ECC events (this period and since the start), execution errors by
    type, host RAM and swap. Colour only when something is wrong."""

    TITLE = "Health"

    def shape_key(self) -> tuple:  # (the per-device ECC line appears with the first event of the stream)
        h = self.history
        return (*super().shape_key(), h is not None and any(k.startswith("ecc_nd") for k in h.totals))

    def lines(self, s: Sample, h: History, width: int) -> list[list[Segment]]:
        bold, plain = style_of("bold"), style_of("")
        tot = h.totals
        c_now, u_now = s.ecc_corrected, s.ecc_uncorrected
        c_all, u_all = tot.get("ecc_corrected", 0.0), tot.get("ecc_uncorrected", 0.0)
        ecc_style = style_of("bold red") if u_all else style_of("yellow") if c_all else plain
        where = f" · most on ND{s.ecc_device}" if s.ecc_device >= 0 else ""
        span = _span(s, h)
        lines = [[Segment("ECC        ", bold), Segment(
            f"corrected {c_now / max(s.period_s, 1e-9):.1f}/s ({c_all:.0f} {span}) · uncorrected "
            f"{u_now:.0f} this period ({u_all:.0f} {span}){where}", ecc_style)]]
        per_dev = sorted(((int(k[6:]), v) for k, v in tot.items() if k.startswith("ecc_nd")), key=lambda x: -x[1])
        if per_dev:  # the devices with events since the start, most first
            lines.append([Segment("ECC by dev ", bold), Segment(
                " " + "  ".join(f"ND{d} {v:.0f}" for d, v in per_dev[:8]) + (" …" if len(per_dev) > 8 else ""),
                ecc_style)])
        errs = {k[len("errors_"):]: v for k, v in tot.items() if k.startswith("errors_")}
        if errs:
            bad = {k: v for k, v in errs.items() if v}
            text = ", ".join(f"{k} {v:.0f}" for k, v in sorted(bad.items())) if bad else "none"
            lines.append([Segment("exec errors", bold), Segment(f" {text} {span} (by type)",
                                                                  style_of("red") if bad else plain)])
        else:
            lines.append([Segment("exec errors", bold), Segment(f" {NOT_HERE} (no execution_stats)", style_of("dim"))])
        if s.host_mem_total:
            frac = s.host_mem_used / s.host_mem_total * 100
            lines.append([Segment("host RAM   ", bold), Segment(
                f"{human_bytes(s.host_mem_used)} of {human_bytes(s.host_mem_total)} ({frac:.0f}%)",
                style_of(fill_style(frac)) if frac >= 90 else plain)])
            swap = (f"{human_bytes(s.swap_used)} of {human_bytes(s.swap_total)}" if s.swap_total else "none configured")
            lines.append([Segment("swap       ", bold), Segment(swap, style_of("yellow") if s.swap_used else plain)])
        else:
            lines.append([Segment("host RAM   ", bold), Segment(f"{NOT_HERE} (no memory_info)", style_of("dim"))])
        return lines


def _ranges(cores: tuple[int, ...]) -> str:
    """0,1,2,3,8 -> "0-3,8"."""
    if not cores:
        return "-"
    out, a, b = [], cores[0], cores[0]
    for c in cores[1:]:
        if c == b + 1:
            b = c
            continue
        out.append(f"{a}-{b}" if b > a else f"{a}")
        a = b = c
    out.append(f"{a}-{b}" if b > a else f"{a}")
    return ",".join(out)
