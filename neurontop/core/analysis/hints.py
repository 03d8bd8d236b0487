"""Hints over a stream: the one monitor that live view, replay, record, export and diagnose share.

A window of the last `window_s` seconds, evaluated once a second of stream time (the stream's own
clock, not the wall clock), the hysteresis (HintTracker), and a reset when the stream restarts:
time going back, a new instance id, or another device shape. Samples and batches go through the
same path: a sample is fed as a one-row batch (telemetry/batch.py), and the statistics of every due
window of a batch are computed at once (window.stats_of_windows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..telemetry.batch import Batch, Layout, from_samples
from ..telemetry.sample import Sample
from .rules import SEVERITY_RANK, Evidence, Hint, breakdown, causes, rank  # noqa: F401  (the public names)
from .thresholds import DEFAULTS, Thresholds
from .window import Dims, WindowStats, rows_since, stats_of, stats_of_windows, window_of_batches, window_rows

DEFAULT_THRESHOLD = DEFAULTS.util_below
DEFAULT_WINDOW_S = DEFAULTS.window_s


def compute(samples: Sequence[Sample], th: Thresholds = DEFAULTS) -> list[Hint]:
    """Ranked hints for the last `th.window_s` seconds of `samples` (most important first)."""
    rows = window_rows(from_samples(list(samples)), th.window_s)
    return rank(stats_of(window_of_batches(rows), th), th) if rows else []


class HintTracker:
    """Hysteresis: a cause shows after it held for `on_s` and clears after absent for `off_s`."""

    def __init__(self, on_s: float = DEFAULTS.on_s, off_s: float = DEFAULTS.off_s) -> None:
        self.on_s, self.off_s = on_s, off_s
        self.first_seen: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}
        self.shown: dict[str, Hint] = {}
        self.start: float | None = None  # the stream time of the first evaluation

    def update(self, hints: Sequence[Hint], now: float) -> list[Hint]:
        present = {h.cause: h for h in hints}
        if self.start is None:
            self.start = now
        # A stream younger than `on_s` has nothing to confirm against: its answer shows at once (a
        # window of a few reports carries a lower confidence), so one report gets the answer
        # diagnose gives it; from then on the hysteresis holds.
        young = now - self.start < self.on_s
        for cause, h in present.items():
            self.first_seen.setdefault(cause, now)
            self.last_seen[cause] = now
            if cause in self.shown or young or now - self.first_seen[cause] >= self.on_s:
                self.shown[cause] = h
        for cause in list(self.first_seen):
            if cause not in present:
                if cause in self.shown and now - self.last_seen[cause] < self.off_s:
                    continue
                self.first_seen.pop(cause, None)
                self.shown.pop(cause, None)
        order = {h.cause: i for i, h in enumerate(hints)}
        return sorted(self.shown.values(), key=lambda h: (order.get(h.cause, len(order)), -h.score))

    def reset(self) -> None:
        self.first_seen.clear()
        self.last_seen.clear()
        self.shown.clear()
        self.start = None


def _changed(b: Batch, row: int) -> bool:
    return any(e.get("type") == "scenario" for e in b.events.get(row, ()))


def _stream_of(lay: Layout) -> tuple:
    """What must stay the same for rows to be one stream: the instance and the device shape."""
    return (lay.instance_id, lay.n_devices, lay.n_cores)


class HintMonitor:
    """Hints over a stream of batches (or samples, as one-row batches).

    `on_eval(time_s, shown, found, lost)` is called after every evaluation with the hints shown from
    then on, those the window supports (before the hysteresis) and the window's time-loss breakdown
    (rules.breakdown: lost utilisation points by cause); `on_restart(row)` when the stream
    restarts at that row of the batch being fed (the window, the hysteresis and the evaluation clock
    start afresh). `diagnose` uses both to report each segment's findings."""

    def __init__(self, th: Thresholds = DEFAULTS,
                 on_eval: Callable[[float, list[Hint], list[Hint], dict[str, float]], None] | None = None,
                 on_restart: Callable[[int], None] | None = None) -> None:
        self.th = th
        self.on_eval, self.on_restart = on_eval, on_restart
        self.tracker = HintTracker(th.on_s, th.off_s)
        self.shown: list[Hint] = []
        self.lost: dict[str, float] = {}  # the last evaluation's time-loss breakdown (points by cause)
        self.util: float | None = None  # the last evaluated window's average utilisation
        self._at = -1e18
        self._tail: list = []  # earlier batches' rows that the next window may still reach: (batch, a, e)
        self._lost_rows: np.ndarray | None = None  # (feed's breakdown columns, while a batch is fed)
        self._stream: tuple | None = None

    def reset(self) -> None:
        self.tracker.reset()
        self.shown = []
        self.lost = {}
        self.util = None
        self._at = -1e18
        self._tail = []

    def feed_sample(self, s: Sample) -> list[dict]:
        """Add a sample; return hint events ({"event": "start"|"end", "cause": ...}) if the shown set changed."""
        before = {h.cause for h in self.shown}
        self.feed(from_samples([s])[0])
        after = {h.cause: h for h in self.shown}
        events = [{"event": "start", **h.to_dict()} for c, h in after.items() if c not in before]
        events += [{"event": "end", "cause": c} for c in sorted(before - set(after))]
        return events

    def feed(self, b: Batch, cause_columns: Sequence[str] | None = None, with_lost: bool = False) -> np.ndarray:
        """Add a batch; [rows, causes] bool: the causes (default: every registered one) shown after each row.
        With `with_lost`, [rows, 2 x causes] floats: those (0 or 1), then each cause's share of the
        time-loss breakdown (utilisation points) of the evaluation in force at each row."""
        cols = causes() if cause_columns is None else tuple(cause_columns)
        n = len(b)
        out = np.zeros((n, len(cols)), dtype=bool)
        self._lost_rows = np.zeros((n, len(cols))) if with_lost else None
        if not n:
            return np.zeros((0, 2 * len(cols))) if with_lost else out
        col = {c: i for i, c in enumerate(cols)}
        tl = b.time_s.tolist()
        stream = _stream_of(b.layout)
        tail = self._tail
        if self._stream is not None and (stream != self._stream or (tail and tl[0] < tail[-1][0].time_s[tail[-1][2] - 1])):
            self._restart(0)
            tail = []
        self._stream = stream
        # the stream restarted (time went back), or the job was changed (a simulator's scenario event)
        back = (np.flatnonzero(np.diff(b.time_s) < 0) + 1).tolist()
        cuts = sorted({*back, *(r for r in b.events if 0 < r < n and _changed(b, r))})
        for a, e in zip([0, *cuts], [*cuts, n], strict=True):
            if a:
                self._restart(a)
                tail = []
            self._piece(b, a, e, tail, out, col)
        self._tail = rows_since([*tail, (b, cuts[-1] if cuts else 0, n)], tl[-1] - self.th.window_s - 1e-9)
        if self._lost_rows is not None:
            return np.concatenate([out.astype(np.float64), self._lost_rows], axis=1)
        return out

    def _restart(self, row: int) -> None:
        self.reset()
        if self.on_restart is not None:
            self.on_restart(row)

    def _piece(self, b: Batch, a: int, e: int, tail: list, out: np.ndarray, col: dict[str, int]) -> None:
        """Rows [a, e) of `b`, one stream after `tail`: evaluate where due, fill `out`."""
        tl = b.time_s.tolist()
        evals = []
        for r in range(a, e):
            if tl[r] - self._at >= self.th.every_s * 0.99:  # (real periods run a little short of 1 s)
                self._at = tl[r]
                evals.append(r)

        def mask() -> np.ndarray:
            m = np.zeros(len(col), dtype=bool)
            m[[col[h.cause] for h in self.shown if h.cause in col]] = True
            return m

        def lost(r0: int, r1: int) -> None:
            if self._lost_rows is not None:
                v = np.zeros(len(col))
                for c, pts in self.lost.items():
                    if c in col:
                        v[col[c]] = pts
                self._lost_rows[r0:r1] = v

        out[a:evals[0] if evals else e] = mask()
        lost(a, evals[0] if evals else e)
        for q, (r, st) in enumerate(zip(evals, self._stats(b, a, tail, evals), strict=True)):
            found = rank(st, self.th)
            self.shown = self.tracker.update(found, tl[r])
            self.util = st.util
            self.lost = breakdown(st, found) if any(h.kind == "bottleneck" for h in found) else {}
            if self.on_eval is not None:
                self.on_eval(tl[r], self.shown, found, self.lost)
            out[r:evals[q + 1] if q + 1 < len(evals) else e] = mask()
            lost(r, evals[q + 1] if q + 1 < len(evals) else e)

    def _stats(self, b: Batch, a: int, tail: list, evals: list[int]) -> list[WindowStats]:
        """The statistics of the window ending at each row in `evals` (rows of `b` from `a` on,
        after `tail`): all at once when every row shares the batch's layout, else one by one."""
        if not evals:
            return []
        t = b.time_s
        thr = [float(t[r]) - self.th.window_s - 1e-9 for r in evals]
        segs = [*tail, (b, a, evals[-1] + 1)]
        if any(sb.layout != b.layout for sb, _, _ in segs):
            out = []
            for r, th in zip(evals, thr, strict=True):
                first = a + int(np.searchsorted(t[a:r + 1], th, side="right"))
                win = [*(rows_since(tail, th) if first == a else []), (b, first, r + 1)]
                out.append(stats_of(window_of_batches(win), self.th))
            return out
        w = window_of_batches(segs, stream=True)
        times = np.concatenate([sb.time_s[sa:se] for sb, sa, se in segs])
        off = len(times) - (evals[-1] + 1 - a)  # the stream's row of batch row a
        hi = np.asarray(evals) - a + off + 1
        lo = np.minimum(np.searchsorted(times, thr, side="right"), hi)  # (times ascend: as searching times[:hi])
        stats = stats_of_windows(w, np.stack([lo, hi], axis=1), vcpu_below=self.th.util_below, th=self.th)
        ok = np.concatenate([[0], np.cumsum(~np.concatenate([sb.flops_ok[sa:se] for sb, sa, se in segs]))])
        has_events = any(sb.events for sb, _, _ in segs)
        rows = [(sb, i) for sb, sa, se in segs for i in range(sa, se)] if has_events else []
        lay = b.layout
        for st, r, x, y in zip(stats, evals, lo.tolist(), hi.tolist(), strict=True):
            if ok[y] != ok[x]:  # a row of the window lacks FLOP rates
                st.has_flops, st.flops = False, 0.0
            st.training = Dims(int(b.micro_batch[r]), int(b.seq_len[r])) if lay.has_training else None
            st.events = [ev for sb, i in rows[x:y] for ev in sb.events.get(i, ())]
        return stats
