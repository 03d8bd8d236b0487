"""Shared pieces: results with min/median/max, machine description, running installed programs."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path


def bin_path(name: str) -> str:
    cand = Path(sys.executable).parent / name
    return str(cand) if cand.exists() else (shutil.which(name) or name)


class Results:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.burner = False  # (the export section's option: see __main__)
        self.figures: list[dict] = []
        self.notes: list[str] = []

    def add(self, section: str, name: str, values: list[float], unit: str, **extra) -> dict:
        vals = [float(v) for v in values if v is not None]
        fig = {"section": section, "name": name, "unit": unit, "n": len(vals),
               "min": min(vals) if vals else None, "median": statistics.median(vals) if vals else None,
               "max": max(vals) if vals else None, **extra}
        self.figures.append(fig)
        med = fig["median"]
        print(f"   {name}: {med:.4g} {unit}" if med is not None else f"   {name}: n/a", file=sys.stderr, flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"   note: {text}", file=sys.stderr, flush=True)

    def markdown(self, mach: dict, elapsed: float) -> str:
        lines = [f"Machine: {mach['cpu']} x{mach['cores']}, {mach['mem_gib']:.0f} GiB, {mach['os']}, "
                 f"Python {mach['python']}; run took {elapsed:.0f} s{' (quick)' if self.quick else ''}", "",
                 "| section | figure | median | min | max | n | unit | target / note |",
                 "|---|---|---|---|---|---|---|---|"]
        for f in self.figures:
            def fmt(v):
                return "n/a" if v is None else f"{v:.4g}"
            lines.append(f"| {f['section']} | {f['name']} | {fmt(f['median'])} | {fmt(f['min'])} | {fmt(f['max'])} "
                         f"| {f['n']} | {f['unit']} | {f.get('target', '')} |")
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        pass
    versions = {}
    for mod in ("textual", "rich", "msgspec", "numpy", "zstandard", "ml_dtypes", "psutil"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            try:
                from importlib.metadata import version

                versions[mod] = version(mod)
            except Exception:
                versions[mod] = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem, "os": platform.platform(),
            "python": platform.python_version(), "hostname": socket.gethostname(), "versions": versions}


class TmuxWindow:
    """A private tmux server with one 120x40 pane running CMD (exec'd, so the pane pid is CMD)."""

    def __init__(self, command: str, width: int = 120, height: int = 40, env: dict | None = None) -> None:
        self.sock = f"ntbench-{uuid.uuid4().hex[:8]}"
        conf = Path(f"/tmp/{self.sock}.conf")
        conf.write_text('set -g default-terminal "tmux-256color"\nset -g status off\n')
        self.conf = conf
        envs = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        self.tmux = ["tmux", "-L", self.sock, "-f", str(conf)]
        subprocess.run(self.tmux + ["new-session", "-d", "-s", "m", "-x", str(width), "-y", str(height),
                                    f"sleep 0.3; exec env LANG=C.UTF-8 LC_ALL=C.UTF-8 COLORTERM=truecolor {envs} {command}"],
                       check=True)
        time.sleep(0.5)

    def pid(self) -> int:
        out = subprocess.run(self.tmux + ["display", "-p", "-t", "m", "#{pane_pid}"], capture_output=True, text=True)
        return int(out.stdout.strip() or 0)

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run(self.tmux + ["send-keys", "-t", "m", k], capture_output=True)
            time.sleep(0.2)

    def capture(self) -> str:
        return subprocess.run(self.tmux + ["capture-pane", "-p", "-t", "m"], capture_output=True, text=True).stdout

    def close(self) -> None:
        subprocess.run(self.tmux + ["kill-server"], capture_output=True)
        self.conf.unlink(missing_ok=True)


def start_sim(sock: str, preset: str, period: float, numerics: bool = False, scenario: str = "healthy",
              extra: list[str] | None = None) -> subprocess.Popen:
    if os.path.exists(sock):
        os.unlink(sock)
    args = [bin_path("devicesim"), "serve", "--socket", sock, "--preset", preset, "--period", f"{period}s",
            "--scenario", scenario] + ([] if numerics else ["--no-numerics"]) + (extra or [])
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not os.path.exists(sock):
        if time.monotonic() > deadline or p.poll() is not None:
            raise RuntimeError("devicesim did not start")
        time.sleep(0.02)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
