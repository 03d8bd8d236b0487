"""Fixed-size ring buffers per metric (numpy), for sparklines and hint windows."""

from __future__ import annotations

import numpy as np

DEFAULT_CAPACITY = 6000  # 10 minutes at 10 reports/s, 100 minutes at 1/s


class Ring:
    """A ring of float64 values; `values()` returns them oldest first."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.buf = np.full(capacity, np.nan)
        self.capacity = capacity
        self.n = 0  # values ever appended

    def append(self, value: float) -> None:
        self.buf[self.n % self.capacity] = value
        self.n += 1

    def __len__(self) -> int:
        return min(self.n, self.capacity)

    def values(self, last: int | None = None) -> np.ndarray:
        k = len(self) if last is None else min(last, len(self))
        if k == 0:
            return self.buf[:0]
        end = self.n % self.capacity
        idx = (np.arange(end - k, end)) % self.capacity
        return self.buf[idx]

    def clear(self) -> None:
        self.buf[:] = np.nan
        self.n = 0


class History:
    """The metrics the UI charts, one ring each, fed one Sample at a time."""

    METRICS = ("time_s", "util_avg", "util_min", "util_max", "hbm_bw_frac", "link_frac", "efa_frac", "host_cpu",
               "flops", "tokens_per_s", "loss", "mfu", "step_time_s", "executions_per_s",
               "comm_frac", "input_frac")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.rings = {m: Ring(capacity) for m in self.METRICS}
        self.device_util: dict[int, Ring] = {}
        # counts summed over every report since the stream began (the health pane's totals)
        self.totals: dict[str, float] = {}
        self.first_seen: dict[int, float] = {}  # a runtime's pid -> the stream time it first appeared
        self.since: float | None = None  # the stream time of the first report the totals and first_seen count
        # False when they do not count from the stream's first report: a replay rebuilds them from the
        # reports just before the position it jumped to (the panes then say over what span they count)
        self.whole = True

    @property
    def partial_since(self) -> float | None:
        """The stream time the totals count from when that is not the stream's start (a replay that
        jumped), else None."""
        return None if self.whole else self.since

    def add(self, s) -> None:  # s: Sample
        r = self.rings
        r["time_s"].append(s.time_s)
        r["util_avg"].append(s.avg_util)
        r["util_min"].append(float(s.util.min()) if len(s.util) else np.nan)
        r["util_max"].append(float(s.util.max()) if len(s.util) else np.nan)
        r["efa_frac"].append(s.efa_rate / s.efa_bw * 100 if s.efa_rate is not None and s.efa_bw else np.nan)
        r["host_cpu"].append(s.sys_user + s.sys_system if s.sys_idle or s.sys_user or s.sys_system else np.nan)
        r["executions_per_s"].append(s.executions / s.period_s if s.period_s else np.nan)
        # the extension's share of the period in exposed collectives and waiting for input (NaN without it)
        ext = s.has_extension
        r["comm_frac"].append(min(1.0, s.exposed_comm_s / s.period_s) if ext and s.period_s else np.nan)
        r["input_frac"].append(float(s.input.wait_frac) if ext and s.input is not None else np.nan)
        if self.since is None:
            self.since = s.time_s
        tot = self.totals
        for key, v in (("ecc_corrected", s.ecc_corrected), ("ecc_uncorrected", s.ecc_uncorrected),
                       *((f"errors_{k}", float(c)) for k, c in s.exec_errors.items())):
            tot[key] = tot.get(key, 0.0) + v
        for d, (c, u) in s.ecc_by_device.items():
            tot[f"ecc_nd{d}"] = tot.get(f"ecc_nd{d}", 0.0) + c + u
        for job in s.jobs:
            self.first_seen.setdefault(job.pid, s.time_s)
        bw = s.hbm_bw * s.n_devices
        r["hbm_bw_frac"].append(float(s.hbm_rate.sum()) / bw * 100 if s.hbm_rate is not None and bw else np.nan)
        if s.link_rate is not None and len(s.link_rate) and s.link_bw:
            r["link_frac"].append(float(s.link_rate.mean()) / s.link_bw * 100)
        else:
            r["link_frac"].append(np.nan)
        r["flops"].append(float(s.flops.sum()) if s.flops is not None else np.nan)
        t = s.training
        r["tokens_per_s"].append(float(t.tokens_per_s) if t else np.nan)
        r["loss"].append(float(t.loss) if t and t.loss is not None else np.nan)
        r["mfu"].append(float(t.mfu) * 100 if t else np.nan)
        r["step_time_s"].append(float(t.step_time_s.p50) if t and t.step_time_s.p50 else np.nan)
        if s.cores_per_device:
            per_dev = s.util.reshape(-1, s.cores_per_device).mean(axis=1) if s.n_cores % s.cores_per_device == 0 \
                else np.array([s.avg_util])
            for d, v in enumerate(per_dev):
                self.device_util.setdefault(d, Ring(self.capacity)).append(float(v))

    def clear(self) -> None:
        for r in self.rings.values():
            r.clear()
        self.device_util.clear()
        self.totals.clear()
        self.first_seen.clear()
        self.since = None
        self.whole = True
