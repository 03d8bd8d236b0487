"""CPU and memory of a process tree from /proc (Linux): the measurement every benchmark uses."""

from __future__ import annotations

import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def sched_ns(pid: int) -> int:
    """Summed sum_exec_runtime (ns) of all threads of one process."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
    except OSError:
        pass
    return total


def cpu_ticks(pid: int) -> float:
    """utime+stime in seconds (10 ms ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def _status_bytes(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _status_bytes(pid, "VmRSS:")


def measure(pid: int, seconds: float, include_children: bool = True) -> dict:
    """CPU share (% of one core, schedstat over the tree) and peak RSS over a window."""
    pids = tree(pid) if include_children else [pid]
    c0 = {p: sched_ns(p) for p in pids}
    t0 = time.monotonic()
    peak = 0
    deadline = t0 + seconds
    while True:
        now = time.monotonic()
        cur = tree(pid) if include_children else [pid]
        peak = max(peak, sum(rss_bytes(p) for p in cur))
        for p in cur:
            c0.setdefault(p, sched_ns(p))
        if now >= deadline:
            break
        time.sleep(min(1.0, deadline - now))
    wall = time.monotonic() - t0
    used = sum(max(0, sched_ns(p) - c0.get(p, 0)) for p in (tree(pid) if include_children else [pid]))
    return {"cpu_pct": 100.0 * used / 1e9 / wall, "rss_mib": peak / 2**20, "wall_s": wall}
