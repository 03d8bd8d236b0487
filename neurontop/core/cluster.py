"""Many nodes at once: one stream per node (a devicesim node, a neuron-monitor behind a socket),
each decoded and diagnosed as the single-node view does, and the cluster's findings across them.

A reader thread per node feeds its node's state; `rows()` and `findings()` read it under a lock,
so a node that stalls, dies or answers garbage changes its own row only. The findings come from
what plain neuron-monitor telemetry carries (utilisation, the node's own diagnosis, whether it
reports at all), so they hold for real clusters too:

- a node down or stale: the data-parallel job waits for it at every all-reduce;
- a slow node: in a synchronous job every node steps together, so the slow one is the node whose
  cores stay busy while the others' idle (its utilisation well above the others');
- input starving on some nodes only: their own diagnosis says input pipeline, the others' does not;
- hardware errors on a node (its own diagnosis);
- collectives slow on every node: most nodes' own diagnosis is communication (a degraded network
  or a collective-bound job), with no slow node to blame.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .analysis.hints import HintMonitor
from .analysis.rules import Evidence
from .analysis.thresholds import DEFAULTS, Thresholds
from .telemetry.sample import DecodeError, Decoder, Sample
from .telemetry.sources import Line, SocketSource, Status

STALE_AFTER_S = 3.0  # no report for this many periods (at least this many seconds): STALE
DOWN_AFTER_S = 10.0  # no report, or no connection, for this long: DOWN
SLOW_NODE_POINTS = 15.0  # the slow node's utilisation above the median of the others
WINDOW_S = DEFAULTS.window_s  # the utilisation a node's row and the findings average over
NODE_EVAL_S = 5.0  # each node's own diagnosis every 5 s of its stream (the single-node view: every 1 s)


@dataclass
class Node:
    """One node's state, written by its reader thread."""

    addr: str
    name: str
    state: str = "CONNECTING"  # CONNECTING, LIVE, STALE, DOWN, ERROR (it sends what is not telemetry)
    detail: str = ""
    last: Sample | None = None
    last_at: float = 0.0  # monotonic time of the last report
    lost_at: float | None = None  # monotonic time the connection was lost (or never made)
    period_s: float = 1.0
    utils: deque = field(default_factory=deque)  # (time_s, average utilisation) over the last WINDOW_S
    top: str = ""  # the node's own top finding's cause
    top_title: str = ""
    bad_lines: int = 0


@dataclass(frozen=True)
class Row:
    """What the cluster view shows for a node."""

    name: str
    addr: str
    state: str
    detail: str
    util: float | None  # average over the window
    cores: tuple[float, ...]  # the last report's per-core utilisation
    hbm_used: int
    hbm_capacity: int
    efa_rate: float | None
    step_time: float | None
    top: str
    top_title: str


@dataclass(frozen=True)
class Finding:
    cause: str  # node_down, slow_node, input_pipeline, hardware_errors, network
    severity: str
    title: str
    nodes: tuple[str, ...]
    evidence: tuple[Evidence, ...]


def node_name(addr: str) -> str:
    """node-03 for a socket ".../node-03.sock", else the address itself."""
    base = os.path.basename(addr)
    return base[:-5] if base.endswith(".sock") else addr


def addresses(spec: str) -> list[str]:
    """--connect A,B,... or a folder of node sockets (devicesim cluster's)."""
    if os.path.isdir(spec):
        socks = sorted(f for f in os.listdir(spec) if f.endswith(".sock"))
        if not socks:
            raise ValueError(f"{spec}: no node sockets (*.sock) in this folder")
        return [os.path.join(spec, f) for f in socks]
    out = [a.strip() for a in spec.split(",") if a.strip()]
    if not out:
        raise ValueError("--connect: no addresses")
    return out


class ClusterMonitor:
    def __init__(self, addrs: list[str], th: Thresholds = DEFAULTS,
                 source: Callable[[str], Iterator] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_report: Callable[[Node, bytes, Sample], None] | None = None) -> None:
        """`on_report(node, line, sample)` is called in the node's reader thread for every report
        (`neuron-top record --cluster` writes each node's profile there)."""
        self.th = th
        self.on_report = on_report
        self.clock = clock
        self.nodes = [Node(a, node_name(a)) for a in addrs]
        if len({n.name for n in self.nodes}) < len(self.nodes):
            for n in self.nodes:
                n.name = n.addr
        self._source = source
        self._sources: list[SocketSource] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started = clock()

    def start(self) -> None:
        for n in self.nodes:
            t = threading.Thread(target=self._read, args=(n,), name=f"cluster-{n.name}", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        for s in self._sources:
            s.close()

    def _events(self, addr: str) -> Iterator:
        if self._source is not None:
            return self._source(addr)
        src = SocketSource(addr)
        self._sources.append(src)
        return src.events()

    def _read(self, n: Node) -> None:
        # A node's top finding over a 10 s window does not need a fresh answer every second; at 64
        # nodes, evaluating each once a second was most of the view's CPU.
        th = dataclasses.replace(self.th, every_s=max(self.th.every_s, NODE_EVAL_S))
        dec = Decoder()
        mon = HintMonitor(th)
        for ev in self._events(n.addr):
            if isinstance(ev, Status):
                with self._lock:
                    if ev.state == "connected":
                        n.state, n.detail, n.lost_at = "CONNECTING", "", None
                        dec, mon = Decoder(), HintMonitor(th)  # a new stream (a restarted node)
                    elif ev.state in ("lost", "ended", "error"):  # (the source retries: STALE, then DOWN)
                        n.lost_at = n.lost_at or self.clock()
                        n.detail = ev.detail
                continue
            if not isinstance(ev, Line):
                continue
            try:
                s = dec.decode(ev.data)
            except DecodeError as exc:
                with self._lock:
                    n.bad_lines += 1
                    n.state, n.detail = "ERROR", f"not neuron-monitor telemetry: {str(exc)[:80]}"
                continue
            mon.feed_sample(s)
            if self.on_report is not None:
                self.on_report(n, ev.data, s)
            with self._lock:
                n.last, n.last_at, n.lost_at = s, self.clock(), None
                n.period_s = s.period_s or n.period_s
                n.state, n.detail = "LIVE", ""
                if n.utils and s.time_s < n.utils[-1][0]:
                    n.utils.clear()  # a new stream's clock
                n.utils.append((s.time_s, s.avg_util))
                while n.utils[0][0] <= s.time_s - WINDOW_S:  # (the reader keeps only the window)
                    n.utils.popleft()
                top = next((h for h in mon.shown if h.kind == "bottleneck"), mon.shown[0] if mon.shown else None)
                n.top, n.top_title = (top.cause, top.title) if top else ("", "")

    # -- reading the state ---------------------------------------------------------------------------
    def _state(self, n: Node, now: float) -> str:
        if n.state == "ERROR":
            return "ERROR"
        silent = now - (n.last_at if n.last is not None else self.started)
        if n.lost_at is not None and now - n.lost_at >= DOWN_AFTER_S or silent >= DOWN_AFTER_S:
            return "DOWN"
        if n.last is None:
            return "CONNECTING"
        if n.lost_at is not None or silent >= max(STALE_AFTER_S, 3 * n.period_s):
            return "STALE"
        return "LIVE"

    def rows(self) -> list[Row]:
        now = self.clock()
        out = []
        with self._lock:
            for n in self.nodes:
                s = n.last
                util = float(np.mean([u for _, u in n.utils])) if n.utils else None
                out.append(Row(
                    n.name, n.addr, self._state(n, now), n.detail, util,
                    tuple(float(x) for x in s.util) if s is not None else (),
                    int(s.mem.sum()) if s is not None else 0,
                    int(s.hbm_capacity * s.n_devices) if s is not None else 0,
                    s.efa_rate if s is not None else None,
                    s.training.step_time_s.p50 or None if s is not None and s.training is not None else None,
                    n.top, n.top_title))
        return out

    def findings(self, rows: list[Row] | None = None) -> list[Finding]:
        """The cluster's findings, most important first."""
        return findings(self.rows() if rows is None else rows, self.th)


def findings(rows: list[Row], th: Thresholds = DEFAULTS) -> list[Finding]:
    """The cluster's findings from the nodes' rows, most important first."""
    out: list[Finding] = []
    gone = [r for r in rows if r.state in ("DOWN", "STALE")]
    if gone:
        down = [r.name for r in gone if r.state == "DOWN"]
        out.append(Finding(
            "node_down", "critical" if down else "warning",
            (f"{', '.join(r.name for r in gone)} {'is' if len(gone) == 1 else 'are'} "
             f"{'down' if down else 'not reporting'}: a data-parallel job waits for "
             f"{'it' if len(gone) == 1 else 'them'} at every all-reduce"),
            tuple(r.name for r in gone),
            tuple(Evidence(f"{r.name} {r.state.lower()}", 0, "") for r in gone)))
    live = [r for r in rows if r.state == "LIVE" and r.util is not None]
    if len(live) >= 2:
        utils = {r.name: float(r.util or 0.0) for r in live}
        busiest = max(live, key=lambda r: utils[r.name])
        others = [utils[r.name] for r in live if r is not busiest]
        median = float(np.median(others))
        if utils[busiest.name] - median >= SLOW_NODE_POINTS and median < th.util_below:
            out.append(Finding(
                "slow_node", "critical",
                f"{busiest.name} holds the job back: its cores work while the other nodes wait for it",
                (busiest.name,),
                (Evidence(f"{busiest.name} utilisation", utils[busiest.name], "%"),
                 Evidence("the other nodes' median utilisation", median, "%"))))
        for cause, title in (("input_pipeline", "input pipeline starving on {nodes} only"),
                             ("hardware_errors", "hardware errors on {nodes}")):
            hit = [r.name for r in live if r.top == cause]
            if hit and (cause == "hardware_errors" or len(hit) <= len(live) // 2):
                out.append(Finding(cause, "warning", title.format(nodes=", ".join(hit)), tuple(hit),
                                   (Evidence("nodes", len(hit), "nodes"), Evidence("of", len(live), "nodes"))))
        comm = [r.name for r in live if r.top == "communication"]
        if len(comm) > len(live) // 2 and not any(f.cause == "slow_node" for f in out):
            out.append(Finding(
                "network", "warning",
                "collectives are slow on every node: a degraded network (EFA) or a collective-bound job",
                tuple(comm), (Evidence("nodes waiting for collectives", len(comm), "nodes"),
                              Evidence("of", len(live), "nodes"))))
    return out


class PrometheusCluster:
    """The same rows from a Prometheus server (its HTTP API), reading `neuron-top exporter`'s series
    or AWS's `neuron-monitor-prometheus.py`'s (the same names): a node is an instance label
    (instance_name, else instance_id). A scrape target that is down (`up == 0`) is DOWN; a node whose
    utilisation series went stale is STALE; a server that is not Prometheus is one ERROR row."""

    QUERIES = {
        "util": "avg by (instance_name, instance_id) (avg_over_time(neuroncore_utilization_ratio[10s]))",
        "cores": "neuroncore_utilization_ratio",
        "mem": 'sum by (instance_name, instance_id) (neuron_runtime_memory_used_bytes{memory_location="neuron_device"})',
        "efa": "neurontop_efa_bytes_per_second",
        "step": "neurontop_step_time_seconds",
        "finding": "neurontop_finding",
        "info": "instance_info",
        "up": "up",
        "age": "time() - neurontop_last_report_timestamp_seconds",
    }

    def __init__(self, url: str, th: Thresholds = DEFAULTS, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url.rstrip("/")
        self.th = th
        self.interval = interval_s
        self.clock = clock
        self._rows: list[Row] = []
        self._seen: dict[str, Row] = {}  # every node met so far: a node that vanishes stays, as STALE
        self._targets: dict[str, str] = {}  # scrape target -> node (kept: a down target's info is stale)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cluster-prometheus", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _query(self, q: str) -> list[dict]:
        import json
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                body = json.loads(r.read(4 << 20))
        except urllib.error.HTTPError as exc:
            raise ValueError(f"{self.url} answered HTTP {exc.code} to a PromQL query: is it Prometheus?") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ValueError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
        except ValueError:
            raise ValueError(f"{self.url} did not answer with Prometheus JSON: is it Prometheus?") from None
        if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
            raise ValueError(f"{self.url} did not answer with Prometheus JSON: is it Prometheus?")
        result = body["data"].get("result", [])
        return result if isinstance(result, list) else []

    def poll(self) -> None:
        """One round of queries into rows (the loop's body; tests call it directly)."""
        try:
            got = {k: self._query(q) for k, q in self.QUERIES.items()}
        except ValueError as exc:
            with self._lock:
                self._rows = [Row(self.url, self.url, "ERROR", str(exc), None, (), 0, 0, None, None, "", "")]
            return

        def node(m: dict) -> str:
            return m.get("instance_name") or m.get("instance_id") or m.get("instance", "?")

        def val(r: dict) -> float:
            try:
                return float(r["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                return float("nan")

        self._targets.update({r["metric"].get("instance", ""): node(r["metric"]) for r in got["info"] if "metric" in r})
        down = {self._targets.get(r["metric"].get("instance", ""), r["metric"].get("instance", "?"))
                for r in got["up"] if val(r) == 0}
        util = {node(r["metric"]): val(r) * 100 for r in got["util"]}
        cores: dict[str, list[tuple[int, float]]] = {}
        for r in got["cores"]:
            cores.setdefault(node(r["metric"]), []).append((int(r["metric"].get("neuroncore", 0) or 0), val(r) * 100))
        mem = {node(r["metric"]): val(r) for r in got["mem"]}
        efa = {node(r["metric"]): val(r) for r in got["efa"]}
        step = {node(r["metric"]): val(r) for r in got["step"]}
        # neuron-top's exporter says how old its last report is (AWS's does not: its nodes read LIVE)
        age = {node(r["metric"]): val(r) for r in got["age"]}
        top: dict[str, tuple[int, str]] = {}
        rank = {"bottleneck": 0, "advisory": 1, "phase": 2}
        for r in got["finding"]:
            if val(r) == 1:
                n, m = node(r["metric"]), r["metric"]
                k = rank.get(m.get("kind", ""), 3)
                if n not in top or k < top[n][0]:
                    top[n] = (k, m.get("cause", ""))
        rows = []
        for n in sorted(set(util) | set(self._seen) | down):
            if n in util:
                old_s = age.get(n, 0.0)
                state = ("DOWN" if n in down or old_s >= DOWN_AFTER_S else "STALE" if old_s >= STALE_AFTER_S
                         else "LIVE")
                row = Row(n, n, state, f"no report for {old_s:.0f} s" if state != "LIVE" and n not in down else "",
                          util[n], tuple(u for _, u in sorted(cores.get(n, []))),
                          int(mem.get(n, 0) or 0), 0, efa.get(n), step.get(n), top.get(n, (0, ""))[1],
                          top.get(n, (0, ""))[1].replace("_", " "))
                self._seen[n] = row
            else:
                old = self._seen.get(n)
                state = "DOWN" if n in down else "STALE"
                row = Row(n, n, state, "its series are stale" if state == "STALE" else "its exporter is down",
                          None, (), old.hbm_used if old else 0, 0, None, None, "", "")
            rows.append(row)
        with self._lock:
            self._rows = rows

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def rows(self) -> list[Row]:
        with self._lock:
            return list(self._rows)

    def findings(self, rows: list[Row] | None = None) -> list[Finding]:
        return findings(self.rows() if rows is None else rows, self.th)
