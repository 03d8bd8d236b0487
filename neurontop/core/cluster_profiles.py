"""A cluster on disk: a folder with one profile per node and an index (`cluster.json`).

`record` writes it from the nodes' streams; `ClusterReplay` puts the nodes on one clock (unix
timestamps when the reports carry them, else each stream's own time) and gives the cluster view's
rows and findings at any moment; `diagnose` walks that clock and reports each cluster finding with
the time range it held; `export` writes every node's rows into one table with a `node` column.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .analysis.hints import HintMonitor
from .analysis.thresholds import DEFAULTS, Thresholds
from .cluster import DOWN_AFTER_S, STALE_AFTER_S, WINDOW_S, ClusterMonitor, Finding, Node, Row, findings
from .export.exporter import Column, Exporter
from .export.reading import feed, open_input
from .store.profile import Profile
from .store.recorder import Recorder
from .telemetry.sample import Sample

INDEX = "cluster.json"
FORMAT = "neuron-top-cluster"


def is_cluster(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, INDEX))


def read_index(folder: str) -> list[dict]:
    """The nodes of a recorded cluster: [{"name", "addr", "file"}]; a bad index is a ValueError naming it."""
    path = os.path.join(folder, INDEX)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        nodes = doc["nodes"]
        assert doc.get("format") == FORMAT and isinstance(nodes, list) and nodes
        for n in nodes:
            assert isinstance(n["name"], str) and isinstance(n["file"], str) and "/" not in n["file"]
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        raise ValueError(f"{path}: not a neuron-top cluster index ({type(exc).__name__}: {exc})") from None
    return nodes


# -- recording -----------------------------------------------------------------------------------------
def record(addrs: list[str], folder: str, stop: threading.Event, duration_s: float | None = None,
           count: int | None = None, th: Thresholds = DEFAULTS) -> dict[str, int]:
    """Every node's reports into FOLDER/<node>.ntprof until `stop`, `duration_s` of wall time or
    `count` reports from every node; the reports written per node."""
    os.makedirs(folder, exist_ok=True)
    if os.listdir(folder):
        raise ValueError(f"{folder}: not empty (a recorded cluster gets a folder of its own)")
    mon = ClusterMonitor(addrs, th)
    recs: dict[str, Recorder] = {}
    counts: dict[str, int] = {}
    start = time.time()
    for n in mon.nodes:
        file = f"{os.path.basename(n.name).replace(':', '_')}.ntprof"
        recs[n.addr] = Recorder(os.path.join(folder, file), {
            "source": json.dumps({"kind": "cluster", "node": n.name, "addr": n.addr}),
            "start_unix": f"{start:.3f}"})
        counts[n.addr] = 0
    with open(os.path.join(folder, INDEX), "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "version": 1, "start_unix": round(start, 3),
                   "nodes": [{"name": n.name, "addr": n.addr, "file": os.path.basename(recs[n.addr].path)}
                             for n in mon.nodes]}, f, indent=1)

    def on_report(n: Node, line: bytes, s: Sample) -> None:
        if count is None or counts[n.addr] < count:
            recs[n.addr].append(line, s)
            counts[n.addr] += 1

    mon.on_report = on_report
    mon.start()
    try:
        while not stop.wait(0.2):
            if duration_s is not None and time.time() - start >= duration_s:
                break
            if count is not None and all(c >= count for c in counts.values()):
                break
    finally:
        mon.close()
        for r in recs.values():
            r.close()
    return {n.name: counts[n.addr] for n in mon.nodes}


# -- replay ----------------------------------------------------------------------------------------------
@dataclass
class _Track:
    name: str
    file: str
    t: np.ndarray  # each report's time on the cluster's clock
    samples: list[Sample]
    top: list[tuple[str, str]]  # the node's own top finding (cause, title) after each report
    period: float = 1.0
    utils: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _load(folder: str, entry: dict, th: Thresholds) -> _Track:
    path = os.path.join(folder, entry["file"])
    samples = list(Profile(path).iter_samples())
    mon = HintMonitor(th)
    top = []
    for s in samples:
        mon.feed_sample(s)
        h = next((h for h in mon.shown if h.kind == "bottleneck"), mon.shown[0] if mon.shown else None)
        top.append((h.cause, h.title) if h else ("", ""))
    stamps = [s.timestamp for s in samples]
    t = np.array(stamps if samples and all(x is not None for x in stamps) else [s.time_s for s in samples], float)
    period = float(np.median([s.period_s for s in samples])) if samples else 1.0
    return _Track(entry["name"], path, t, samples, top, period or 1.0, np.array([s.avg_util for s in samples]))


class ClusterReplay:
    """A recorded cluster on one clock, with a cursor that plays, pauses and seeks (the cluster view's
    source in replay: `rows()` and `findings()` at the cursor)."""

    def __init__(self, folder: str, th: Thresholds = DEFAULTS, clock: Callable[[], float] = time.monotonic) -> None:
        self.th = th
        self.tracks = [_load(folder, e, th) for e in read_index(folder)]
        times = [tr.t for tr in self.tracks if len(tr.t)]
        if not times:
            raise ValueError(f"{folder}: the cluster's profiles hold no reports")
        self.t0 = min(float(t[0]) for t in times)
        self.length = max(float(t[-1]) for t in times) - self.t0  # seconds
        self.clock = clock
        self.speed = 1.0
        self.paused = False
        self._pos = 0.0
        self._at = clock()

    # the cursor, in seconds from the start
    @property
    def position(self) -> float:
        if not self.paused:
            now = self.clock()
            self._pos = min(self.length, self._pos + (now - self._at) * self.speed)
            self._at = now
        return self._pos

    def seek(self, seconds: float) -> None:
        """Move by `seconds` (negative: back)."""
        self.go(self.position + seconds)

    def go(self, position: float) -> None:
        """Move to `position` seconds from the start."""
        self._pos = min(max(0.0, position), self.length)
        self._at = self.clock()

    def faster(self, factor: float) -> None:
        """Halve or double the speed, within the single-node replay's range (1/16x to 64x)."""
        from .store.replay import SPEEDS

        _ = self.position
        self.speed = min(max(self.speed * factor, SPEEDS[0]), SPEEDS[-1])

    def toggle(self) -> None:
        _ = self.position
        self.paused = not self.paused
        self._at = self.clock()

    def start(self) -> None:  # (a live monitor's start and close: nothing to do here)
        pass

    def close(self) -> None:
        pass

    def rows_at(self, pos: float) -> list[Row]:
        t = self.t0 + pos
        out = []
        for tr in self.tracks:
            k = int(np.searchsorted(tr.t, t, side="right")) - 1
            if k < 0:
                out.append(Row(tr.name, tr.file, "CONNECTING", "no report yet", None, (), 0, 0, None, None, "", ""))
                continue
            s = tr.samples[k]
            silent = t - float(tr.t[k])
            state = "DOWN" if silent >= DOWN_AFTER_S else "STALE" if silent >= max(STALE_AFTER_S, 3 * tr.period) \
                else "LIVE"
            lo = int(np.searchsorted(tr.t, t - WINDOW_S, side="right"))
            util = float(tr.utils[lo:k + 1].mean()) if k + 1 > lo else None
            out.append(Row(tr.name, tr.file, state, "", util, tuple(float(x) for x in s.util), int(s.mem.sum()),
                           int(s.hbm_capacity * s.n_devices), s.efa_rate,
                           (s.training.step_time_s.p50 or None) if s.training is not None else None,
                           tr.top[k][0], tr.top[k][1]))
        return out

    def rows(self) -> list[Row]:
        return self.rows_at(self.position)

    def findings(self, rows: list[Row] | None = None) -> list[Finding]:
        return findings(self.rows() if rows is None else rows, self.th)


def diagnose(folder: str, th: Thresholds = DEFAULTS, step_s: float = 1.0) -> list[dict]:
    """Each cluster finding with the time range it held (seconds from the start) and its nodes."""
    rep = ClusterReplay(folder, th)
    spans: dict[tuple[str, tuple[str, ...]], dict] = {}
    pos = 0.0
    length = rep.length
    while pos <= length + 1e-9:
        for f in findings(rep.rows_at(pos), th):
            key = (f.cause, f.nodes)
            sp = spans.setdefault(key, {"cause": f.cause, "nodes": list(f.nodes), "title": f.title,
                                        "severity": f.severity, "start_s": pos, "end_s": pos, "checks": 0})
            sp["end_s"] = pos
            sp["checks"] += 1
        pos += step_s
    checks = int(length / step_s) + 1
    out = [{**sp, "share_of_run": round(sp.pop("checks") / checks, 3)} for sp in spans.values()]
    out = [sp for sp in out if sp["share_of_run"] >= 0.1 or sp["cause"] == "node_down"]
    return sorted(out, key=lambda sp: (-sp["share_of_run"], sp["start_s"]))


# -- export ----------------------------------------------------------------------------------------------
def export(folder: str, sink: Callable[[pl.LazyFrame, list[Column]], None], groups: tuple[str, ...],
           **opts) -> int:
    """Every node's export (the same options) into one sink, each frame with a `node` column first;
    the rows written. The nodes must have the same columns (the same instance type)."""
    total = 0
    first: list[str] | None = None
    for e in read_index(folder):
        path = os.path.join(folder, e["file"])

        def tagged(frame: pl.LazyFrame, cols: list[Column], name: str = e["name"], path: str = path) -> None:
            nonlocal first
            names = frame.collect_schema().names()
            if first is None:
                first = names
            elif names != first:
                raise ValueError(f"{path}: its columns differ from the first node's (another instance type?); "
                                 "export the nodes one by one")
            sink(frame.select(pl.lit(name).alias("node"), pl.all()), cols)

        ex = Exporter(tagged, groups, **opts)
        total += feed(open_input(path), ex)
    return total
