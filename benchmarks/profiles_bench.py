"""Profiles: size per hour, recording overhead, open/seek in a 24-hour profile, CSV export speed."""

from __future__ import annotations

import csv
import importlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devicesim.engine import FIXED_EPOCH, Engine, SimConfig, encode
from devicesim.presets import get_preset
from neurontop.core.store.profile import Profile
from neurontop.core.store.recorder import Recorder

from .common import Results, TmuxWindow, bin_path, start_sim, stop
from .procstat import measure


@dataclass
class _T:
    """What the recorder needs of a sample when the benchmark writes without decoding."""

    time_s: float
    events: tuple = ()


def make_profile(path: str, preset: str, period: float, count: int, seed: int = 1) -> float:
    eng = Engine(SimConfig(get_preset(preset), seed=seed, period_s=period, numerics=False, start_time=FIXED_EPOCH))
    rec = Recorder(path, {"simulator": {"preset": preset, "period_s": period}})
    t0 = time.perf_counter()
    for k in range(count):
        rep = eng.step_window()
        rec.append(encode(rep), _T(rep["neuron_top"]["time_s"]), now=k * period)  # type: ignore[arg-type]
    rec.close()
    return time.perf_counter() - t0


_LAUNCH = """
import os, sys
t0 = os.times().elapsed
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stdout carries only the launcher's figures
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, ru = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), os.times().elapsed - t0, ru.ru_maxrss)
"""


def _run_measured(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a command, from wait4's rusage.

    A small launcher forks it: a child forked straight from this (large) process would report
    this process's memory as its own peak (Linux keeps the pre-exec high-water mark).
    """
    out = subprocess.run([sys.executable, "-c", _LAUNCH, *args], capture_output=True, text=True)
    code, wall, rss_kib = out.stdout.split()
    if int(code) != 0:
        raise RuntimeError(f"{args[:3]} exited {code}: {out.stderr.strip()[-300:]}")
    return float(wall), int(rss_kib) / 1024


def _tree_peak_mib(args: list[str]) -> float:
    """Peak of the summed RSS of a command and its children (the export forks a reader), sampled
    every 20 ms; shared pages count in each process, so this errs high."""
    import psutil

    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.02)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:3]} exited {proc.returncode}")
    return peak / 2**20


def _ensure(mod: str, install: bool = True):
    try:
        return importlib.import_module(mod)
    except ImportError:
        if not install:
            return None
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", mod], capture_output=True, timeout=900)
        try:
            return importlib.import_module(mod)
        except ImportError:
            return None


def run(res: Results) -> None:
    quick = res.quick
    tmp = tempfile.mkdtemp(prefix="ntbench-prof-")
    # 1. Size per hour.
    for period, count in ((1.0, 120 if quick else 3600), (0.1, 200 if quick else 1800)):
        path = os.path.join(tmp, f"size-{period}.ntprof")
        make_profile(path, "trn1.32xlarge", period, count)
        per_hour = os.path.getsize(path) / (count * period) * 3600 / 1e6
        res.add("profiles", f"profile size per hour, trn1.32xlarge at {period:g}s", [per_hour], "MB/hour",
                target="<= 2 MB/hour" if period == 1.0 else "")
    # 2. Recording overhead on the live view.
    recording_overhead(res, tmp)
    # 3. Open and seek in a 24-hour profile at 1 s.
    n24 = 3600 if quick else 86400
    big = os.path.join(tmp, "day.ntprof")
    gen = make_profile(big, "trn1.32xlarge", 1.0, n24)
    res.note(f"generated a {n24}-sample profile ({os.path.getsize(big) / 1e6:.1f} MB) in {gen:.0f} s")
    open_and_seek(res, big, n24, "24-hour" if not quick else "1-hour")
    # 4. Export one hour at 0.1 s (36,000 samples), --fields all.
    export_bench(res, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def open_and_seek(res: Results, big: str, n: int, label: str) -> None:
    """Open (metadata and the time index, all a replay needs before its first frame) and random seeks."""
    opens, seeks = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        prof = Profile(big)
        len(prof)  # the time index (read when first asked)
        opens.append(time.perf_counter() - t0)
        rng = random.Random(0)
        for _ in range(30):
            t = rng.uniform(0, n)
            t0 = time.perf_counter()
            prof.sample(_bisect(prof.times, t))  # last sample at or before t, as replay's seek does
            seeks.append(time.perf_counter() - t0)
        prof.close()
    res.add("profiles", f"open a {label} profile at 1 s ({n} samples), with its time index",
            [x * 1e3 for x in opens], "ms")
    res.add("profiles", f"seek to a random time in the {label} profile and decode it", [x * 1e3 for x in seeks],
            "ms", target="<= 50 ms")


def _bisect(times: list[float], t: float) -> int:
    import bisect

    return max(0, bisect.bisect_right(times, times[0] + t) - 1)


def recording_overhead(res: Results, tmp: str) -> None:
    secs = 4.0 if res.quick else 20.0
    sock = os.path.join(tmp, "rec.sock")
    for recording in (False, True):
        sim = start_sim(sock, "trn1.32xlarge", 1.0)
        w = TmuxWindow(f"{bin_path('neuron-top')} --connect {sock} --record-dir {tmp}")
        try:
            time.sleep(3.0)
            if recording:
                w.keys("r")
                time.sleep(1.0)
            m = measure(w.pid(), secs, include_children=False)
            if recording and "REC" not in w.capture():
                res.note("recording overhead: the REC indicator did not appear")
            w.keys("r" if recording else "", "q")
        finally:
            w.close()
            stop(sim)
        res.add("profiles", f"neuron-top trn1.32xlarge at 1 s CPU, {'recording' if recording else 'not recording'}",
                [m["cpu_pct"]], "% of one core")


def recording_only(res: Results) -> None:
    with tempfile.TemporaryDirectory(prefix="nt-rec-bench-") as tmp:
        recording_overhead(res, tmp)


def pyarrow_writes(table, path: str, runs: int = 3) -> list[float]:
    """Seconds pyarrow.csv.write_csv takes to write `table` (already in memory), `runs` times."""
    import pyarrow.csv as pacsv

    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pacsv.write_csv(table, path)
        out.append(time.perf_counter() - t0)
    return out


def import_seconds(mods: tuple[str, ...], runs: int = 3) -> dict[str, float]:
    """The best of `runs` imports of each module in a new interpreter, less an empty interpreter's
    start (the ones installed): what each library adds to an export's start."""
    def best(code: str) -> float | None:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            if subprocess.run([sys.executable, "-c", code], capture_output=True).returncode != 0:
                return None
            times.append(time.perf_counter() - t0)
        return min(times)

    base = best("pass") or 0.0
    return {m: t - base for m in mods if (t := best(f"import {m}")) is not None}


def _parquet(res: Results, path: str, out: str, table) -> None:
    """The same hour to Parquet with neuron-top (from process start), next to pyarrow and polars
    writing the same table, zstd, from memory."""
    import pyarrow.parquet as pq

    pqf = out[:-4] + ".parquet"
    runs = [_run_measured([bin_path("neuron-top"), "export", path, "-o", pqf, "--fields", "all"])
            for _ in range(1 if res.quick else 3)]
    res.add("profiles", f"export to Parquet (zstd, {os.path.getsize(pqf) / 1e6:.1f} MB), neuron-top", [w for w, _ in runs],
            "s")
    res.add("profiles", "export to Parquet peak RSS (largest process)", [r for _, r in runs], "MiB")
    t_pa = []
    for _ in range(3):
        t0 = time.perf_counter()
        pq.write_table(table, pqf + ".pa", compression="zstd")
        t_pa.append(time.perf_counter() - t0)
    res.add("profiles", "pyarrow.parquet.write_table of the same table (zstd, in memory already)", t_pa, "s")
    pl = _ensure("polars", install=not res.quick)
    if pl is not None:
        df = pl.from_arrow(table)
        t0 = time.perf_counter()
        df.write_parquet(pqf + ".pl", compression="zstd")
        res.add("profiles", "polars write_parquet of the same table (zstd)", [time.perf_counter() - t0], "s")
    ddb = _ensure("duckdb", install=not res.quick)
    if ddb is not None:
        t0 = time.perf_counter()
        ddb.from_arrow(table).write_parquet(pqf + ".ddb", compression="zstd")
        res.add("profiles", "DuckDB write_parquet of the same table (zstd)", [time.perf_counter() - t0], "s")


@contextmanager
def burner(on: bool) -> Iterator[None]:
    """A busy loop on one CPU for the block (`--burner`: the export under load)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def export_only(res: Results) -> None:
    with tempfile.TemporaryDirectory(prefix="nt-export-bench-") as tmp, burner(res.burner):
        if res.burner:
            res.note("a busy loop ran on one CPU during this section (--burner)")
        export_bench(res, tmp)


def export_bench(res: Results, tmp: str) -> None:
    n = 600 if res.quick else 36000
    path = os.path.join(tmp, "hour.ntprof")
    make_profile(path, "trn1.32xlarge", 0.1, n, seed=3)
    out = os.path.join(tmp, "hour.csv")
    cmd = [bin_path("neuron-top"), "export", path, "-o", out, "--fields", "all"]
    walls, rss = [], []
    for _ in range(1 if res.quick else 3):
        w, r = _run_measured(cmd)
        walls.append(w)
        rss.append(r)
    size = os.path.getsize(out)
    with open(out) as f:
        header = f.readline().count(",") + 1
    res.add("profiles", f"export {n} samples at 0.1 s to CSV, --fields all ({header} columns, {size / 1e6:.0f} MB), "
            "neuron-top (decode + hints + format)", walls, "s")
    res.add("profiles", "export peak RSS (largest process: writer or forked reader)", rss, "MiB")
    tree = _tree_peak_mib(cmd)
    res.add("profiles", "export peak RSS, writer + reader summed (shared pages counted twice)", [tree], "MiB")
    # Flat memory: a tenth of the length must not need less memory than the whole.
    short = os.path.join(tmp, "short.ntprof")
    make_profile(short, "trn1.32xlarge", 0.1, max(60, n // 10), seed=3)
    tree_short = _tree_peak_mib([bin_path("neuron-top"), "export", short, "-o", out[:-4] + "-short.csv", "--fields", "all"])
    res.add("profiles", "export peak RSS growth from 1/10 of the length to the whole (summed)", [tree - tree_short],
            "MiB", target="<= 100 MiB")
    # The same table written by other CSV writers, in this run.
    pa = _ensure("pyarrow", install=not res.quick)
    if pa is not None:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(out)
        t_pa = pyarrow_writes(table, out + ".pa")
        res.add("profiles", "pyarrow.csv.write_csv of the same table (in memory already)", t_pa, "s")
        res.add("profiles", "neuron-top export time / pyarrow write time (medians)",
                [sorted(walls)[len(walls) // 2] / sorted(t_pa)[1]], "x", target="<= 1 (no slower than pyarrow)")
        pl = _ensure("polars", install=not res.quick)
        if pl is not None:
            df = pl.from_arrow(table)
            t0 = time.perf_counter()
            df.write_csv(out + ".pl")
            res.add("profiles", "polars write_csv of the same table", [time.perf_counter() - t0], "s")
        ddb = _ensure("duckdb", install=not res.quick)  # (the third candidate writer)
        if ddb is not None:
            t0 = time.perf_counter()
            ddb.from_arrow(table).write_csv(out + ".ddb")
            res.add("profiles", "DuckDB write_csv of the same table", [time.perf_counter() - t0], "s")
        for mod, t_imp in import_seconds(("polars", "pyarrow", "duckdb")).items():
            res.add("profiles", f"import {mod} (a new process, less an empty one's start)", [t_imp], "s")
        rows = table.to_pylist()
        t0 = time.perf_counter()
        with open(out + ".csvmod", "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(table.column_names)
            for r in rows:
                wr.writerow(r.values())
        res.add("profiles", "stdlib csv.writer of the same table", [time.perf_counter() - t0], "s")
        _parquet(res, path, out, table)
    else:
        res.note("pyarrow unavailable: CSV writer comparison skipped")
    # The physical limit: writing the same number of bytes raw, flushed.
    data = os.urandom(min(size, 64 * 2**20))
    t0 = time.perf_counter()
    with open(out + ".raw", "wb") as f:
        left = size
        while left > 0:
            f.write(data[: min(left, len(data))])
            left -= len(data)
        f.flush()
        os.fsync(f.fileno())
    raw = time.perf_counter() - t0
    res.add("profiles", f"raw write of the same {size / 1e6:.0f} MB with fsync (disk limit)", [raw], "s",
            mb_per_s=size / raw / 1e6)
