"""Monitor overhead side by side (neuron-top vs htop, btop, glances, bpytop) and start-up time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import Results, TmuxWindow, bin_path, start_sim, stop
from .procstat import measure

PEER_VENV = Path(tempfile.gettempdir()) / "ntbench-peers"


def _ensure_debian(pkg: str) -> str | None:
    if shutil.which(pkg):
        return shutil.which(pkg)
    if os.geteuid() != 0:
        return None
    subprocess.run(["apt-get", "install", "-y", "-qq", pkg], capture_output=True, timeout=600)
    if not shutil.which(pkg):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", pkg], capture_output=True, timeout=600)
    return shutil.which(pkg)


def _ensure_pip(pkg: str) -> str | None:
    exe = PEER_VENV / "bin" / pkg
    if exe.exists():
        return str(exe)
    if not (PEER_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], capture_output=True, timeout=300)
    subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", pkg], capture_output=True, timeout=900)
    return str(exe) if exe.exists() else None


def _home_with_configs(refresh_s: float) -> str:
    """A HOME with btop and bpytop configs at the given refresh (no update checks: no network)."""
    home = Path(tempfile.mkdtemp(prefix="ntbench-home-"))
    ms = int(refresh_s * 1000)
    (home / ".config" / "btop").mkdir(parents=True)
    (home / ".config" / "btop" / "btop.conf").write_text(f"update_ms = {ms}\n")
    (home / ".config" / "bpytop").mkdir(parents=True)
    (home / ".config" / "bpytop" / "bpytop.conf").write_text(f"update_ms={ms}\nupdate_check=False\n")
    return str(home)


def _measure_window(command: str, warmup: float, seconds: float, env: dict | None = None,
                    include_children: bool = True, windows: int = 1) -> dict | None:
    """CPU share and peak RSS of a program in a 120x40 tmux window. With several windows (back
    to back, `seconds` in all) the CPU share is their median: this VM's neighbours steal time in
    bursts, which a single mean carries in whole."""
    w = TmuxWindow(command, env=env)
    try:
        time.sleep(warmup)
        pid = w.pid()
        if not pid or not os.path.exists(f"/proc/{pid}"):
            return None
        parts = [measure(pid, seconds / windows, include_children=include_children) for _ in range(windows)]
        w.keys("q")
        cpu = sorted(p["cpu_pct"] for p in parts)
        return {"cpu_pct": cpu[len(cpu) // 2], "cpu_windows": cpu, "rss_mib": max(p["rss_mib"] for p in parts)}
    finally:
        w.close()


def overhead(res: Results) -> None:
    quick = res.quick
    warm, secs = (3.0, 4.0) if quick else (5.0, 60.0)  # (the issue: CPU and RSS over 60 s)
    peer_secs = 4.0 if quick else 15.0
    nt = {}
    configs = [("trn1.2xlarge", 1.0)] if quick else [
        (p, r) for p in ("trn1.32xlarge", "trn2.48xlarge") for r in (1.0, 0.5, 0.1)]
    sock = os.path.join(tempfile.mkdtemp(prefix="ntbench-"), "sim.sock")
    for preset, refresh in configs:
        sim = start_sim(sock, preset, refresh)
        try:
            m = _measure_window(f"{bin_path('neuron-top')} --connect {sock} --refresh {refresh}s", warm, secs,
                                windows=1 if quick else 3)
        finally:
            stop(sim)
        if m is None:
            res.note(f"neuron-top {preset} {refresh}s: did not run")
            continue
        target = {1.0: "<= 0.8 %", 0.5: "<= 1.2 %", 0.1: "<= 6 %"}[refresh]
        res.add("monitors", f"neuron-top {preset} refresh {refresh:g}s CPU (60 s: three 20 s windows)",
                m["cpu_windows"], "% of one core", target=target)
        res.add("monitors", f"neuron-top {preset} refresh {refresh:g}s peak RSS", [m["rss_mib"]], "MiB",
                target="<= 80 MiB")
        nt[(preset, refresh)] = m["cpu_pct"]
    if quick:
        res.note("quick run: peers skipped")
        return
    peers = {
        "htop": lambda r: (f"{_ensure_debian('htop')} -d {int(r * 10)}", None),
        "btop": lambda r: (f"{_ensure_debian('btop')}", {"HOME": _home_with_configs(r)}),
        "glances": lambda r: (f"{_ensure_pip('glances')} -t {r} --disable-plugin ports,cloud --disable-check-update",
                              None),
        "bpytop": lambda r: (f"{_ensure_pip('bpytop')}", {"HOME": _home_with_configs(r)}),
    }
    for name, make in peers.items():
        for refresh in (1.0, 0.5):
            try:
                cmd, env = make(refresh)
            except Exception as exc:  # install failed
                res.note(f"{name}: skipped ({exc})")
                break
            if cmd.startswith("None"):
                res.note(f"{name}: skipped (could not install)")
                break
            m = _measure_window(cmd, warm, peer_secs, env)
            if m is None:
                res.note(f"{name} {refresh}s: did not run")
                continue
            res.add("monitors", f"{name} refresh {refresh:g}s CPU", [m["cpu_pct"]], "% of one core")
            res.add("monitors", f"{name} refresh {refresh:g}s peak RSS", [m["rss_mib"]], "MiB")
            for (preset, r), v in nt.items():
                if r == refresh and m["cpu_pct"] > 0:  # (neuron-top's median window)
                    res.add("monitors", f"neuron-top {preset} / {name} CPU ratio at {refresh:g}s",
                            [v / m["cpu_pct"]], "x")


def startup(res: Results) -> None:
    """Launch to the first frame with data: with a running simulator and when neuron-top starts one."""
    reps = 1 if res.quick else 3
    tmp = tempfile.mkdtemp(prefix="ntbench-")
    sock = os.path.join(tmp, "sim.sock")
    for mode in ("running simulator", "embedded simulator"):
        vals = []
        for k in range(reps):
            mark = os.path.join(tmp, f"mark-{mode[:3]}-{k}")
            sim = start_sim(sock, "trn1.32xlarge", 0.1) if mode == "running simulator" else None
            cmd = f"{bin_path('neuron-top')} " + (f"--connect {sock}" if sim else "--preset trn1.32xlarge --period 0.1s")
            # The launch time is taken inside the pane, right before exec.
            script = os.path.join(tmp, f"launch-{k}.sh")
            with open(script, "w") as f:
                f.write(f"#!/bin/sh\ndate +%s.%N > {mark}.start\nexec {cmd}\n")
            os.chmod(script, 0o755)
            w = TmuxWindow(script, env={"NEURON_TOP_FIRST_FRAME_MARK": mark})
            try:
                deadline = time.monotonic() + 30
                while not os.path.exists(mark) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if os.path.exists(mark) and os.path.exists(mark + ".start"):
                    time.sleep(0.05)
                    t0 = float(open(mark + ".start").read())
                    t1 = float(open(mark).read())
                    vals.append(t1 - t0)
                w.keys("q")
                time.sleep(0.5)
            finally:
                w.close()
                if sim:
                    stop(sim)
        target = "<= 1.0 s" if mode == "running simulator" else "<= 1.5 s"
        res.add("startup", f"launch to first frame with data ({mode})", vals, "s", target=target)
