"""End to end: the installed neuron-top in a real terminal (tmux) against a real devicesim process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import SAMPLE_JSONL, bin_path, needs_shared

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("tmux") is None,
                                                  reason="tmux is not installed (.ci/run installs it)")]


class Tmux:
    def __init__(self, command: str, width: int = 120, height: int = 40) -> None:
        self.name = f"nt-{uuid.uuid4().hex[:8]}"
        self.done = Path(f"/tmp/{self.name}.done")
        env = f"PATH={os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"
        # A tmux server of its own: the shared default server exits when its last session is killed,
        # and a session created at that moment fails ("server exited unexpectedly").
        self.tmux = ["tmux", "-L", self.name, "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        f"sleep 0.5; env {env} {command}; echo $? > {self.done}; sleep 60"], check=True)
        # A detached session starts at 80x24 and is resized a moment later; start the app after that.

    def capture(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def keys(self, *keys: str) -> None:
        for k in keys:
            subprocess.run([*self.tmux, "send-keys", "-t", self.name, k], check=True)
            time.sleep(0.3)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never appeared; screen was:\n{screen}")

    def wait_exit(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.done.exists():
                return int(self.done.read_text().strip() or "-1")
            time.sleep(0.1)
        raise AssertionError("neuron-top did not exit")

    def kill(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)
        self.done.unlink(missing_ok=True)


def start_sim(sock: Path) -> subprocess.Popen:
    p = subprocess.Popen([bin_path("devicesim"), "serve", "--socket", str(sock), "--period", "0.5s",
                          "--preset", "trn1.32xlarge", "--scenario", "input_bound"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not sock.exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    return p


def grid_rows(screen: str) -> list[str]:
    return [ln for ln in screen.splitlines() if re.search(r"│ ND\d+ ", ln)]


def test_live_monitor_against_a_running_simulator(tmp_path) -> None:
    sock = tmp_path / "sim.sock"
    sim = start_sim(sock)
    t = Tmux(f"{bin_path('neuron-top')} --connect {sock}")
    try:
        first = t.wait_for(r"ND15 .*%")
        assert "LIVE" in first
        for pane in ("Training", "Graphs"):  # (placed once the first reports are in)
            t.wait_for(pane)
        # (memory is placed too, unless a hint's pane takes its rows: on a busy machine the simulator's
        # host is busy and its input-pipeline hint brings the vCPU pane up; `m` shows memory either way)
        t.keys("m")
        t.wait_for("Memory Usage Summary")
        t.keys("m")
        t.keys("i")  # a pane that did not fit comes first in the right-hand column
        t.wait_for(r"Interconnect \(NeuronLink")
        t.keys("i")
        rows1 = grid_rows(first)
        time.sleep(2.5)
        second = t.capture()
        assert grid_rows(second) != rows1, "the core grid should change as reports arrive"
        # Kill the simulator: the screen says so; restart it: data resumes without restarting neuron-top.
        sim.send_signal(signal.SIGKILL)
        sim.wait()
        t.wait_for(r"STALE")
        sim = start_sim(sock)
        t.wait_for(r"LIVE", timeout=30)
        # Keys through the real terminal driver: a lone Esc is only told from the start of an
        # escape sequence by a timeout, which neuron-top's quiet input thread must still honour.
        t.keys("?")
        t.wait_for(r"esc or \? closes")
        t.keys("Escape")
        deadline = time.monotonic() + 5
        while "esc or ? closes" in t.capture():
            assert time.monotonic() < deadline, "Esc did not close the help screen"
            time.sleep(0.1)
        t.keys("q")
        assert t.wait_exit() == 0  # (an input thread blocked for good would hang the exit here)
    finally:
        t.kill()
        sim.kill()


def test_the_screen_at_80x24_holds_every_device_and_brings_up_each_pane(tmp_path) -> None:
    """At 80x24 on a trn1.32xlarge: all 16 devices on screen; the health pane shows the preset's host
    RAM (512 GiB); the jobs pane the simulator's own pid; the training chart moves with the reports."""
    sock = tmp_path / "sim.sock"
    sim = start_sim(sock)
    t = Tmux(f"{bin_path('neuron-top')} --connect {sock}", width=80, height=24)
    try:
        t.wait_for(r"ND15 .*%")
        screen = t.wait_for("(?s)" + "".join(rf"(?=.*\bND{d}\b)" for d in range(16)))  # (a whole frame)
        assert all(re.search(rf"\bND{d}\b", screen) for d in range(16)), screen
        assert "▂" not in "".join(ln[-2:] for ln in screen.splitlines()), "no stray scrollbar in the gutter"
        t.keys("h")
        t.wait_for(r"host RAM .* of 512\.0GiB")
        t.keys("h", "w")
        t.wait_for(rf"Jobs[\s\S]*\b{sim.pid}\b")
        t.keys("w", "t")
        first = t.wait_for(r"tokens/s +\S")

        def spark(screen: str) -> list[str]:
            return [ln for ln in screen.splitlines() if "tokens/s" in ln]
        deadline = time.monotonic() + 20
        while spark(t.capture()) == spark(first):  # a new report adds a column to the chart
            assert time.monotonic() < deadline, f"the training chart did not advance:\n{first}"
            time.sleep(0.3)
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.kill()
        sim.kill()


def _descendants(root: int) -> set[int]:
    """Every process below `root` (from /proc, so no procps is needed)."""
    children: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(pid))
    out: set[int] = set()
    todo = [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _private_simulators(t: Tmux) -> set[int]:
    """The simulators started by the neuron-top in this tmux pane (not any other on the machine)."""
    pane = subprocess.run([*t.tmux, "display-message", "-p", "-t", t.name, "#{pane_pid}"], capture_output=True,
                          text=True).stdout.strip()
    found = set()
    for pid in _descendants(int(pane)):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "devicesim serve" in cmd:
            found.add(pid)
    return found


def _wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    # (the simulator gets SIGTERM on the way out; on a loaded machine it may take a moment)
    deadline = time.monotonic() + timeout
    while {p for p in pids if _alive(p)} and time.monotonic() < deadline:
        time.sleep(0.2)
    return {p for p in pids if _alive(p)}


def test_embedded_simulator_starts_and_stops_with_neuron_top() -> None:
    t = Tmux(f"{bin_path('neuron-top')} --preset trn1.2xlarge --scenario healthy --seed 3")
    try:
        screen = t.wait_for(r"ND0 .*%")
        assert "trn1.2xlarge" in screen
        sims = _private_simulators(t)
        assert sims, "a private simulator should be running"
        t.keys("q")
        assert t.wait_exit() == 0
        assert not _wait_gone(sims), "quitting must leave no simulator running"
    finally:
        t.kill()


def test_closing_the_terminal_stops_the_embedded_simulator() -> None:
    t = Tmux(f"{bin_path('neuron-top')} --preset trn1.2xlarge")
    try:
        t.wait_for(r"ND0 .*%")
        sims = _private_simulators(t)
        assert sims
    finally:
        t.kill()  # the terminal goes away: SIGHUP
    assert not _wait_gone(sims)


@needs_shared
def test_stdin_pipe_in_a_real_terminal() -> None:
    t = Tmux(f"cat {SAMPLE_JSONL} | {bin_path('neuron-top')} -", 200, 60)
    try:
        t.wait_for(r"ND15 .*%")
        # (the first reports move the panes to their places: wait for a whole frame, not one drawn halfway)
        screen = t.wait_for(r"│ ND0 (?:.*?\d+\.\d%){4}")
        assert "ENDED" in screen or "LIVE" in screen
        assert len(re.findall(r"\d+\.\d%", grid_rows(screen)[0])) == 4
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.kill()


def test_non_tty_stdout_is_a_clear_error() -> None:
    r = subprocess.run([bin_path("neuron-top"), "--connect", "/nonexistent.sock"], capture_output=True, timeout=30)
    assert r.returncode == 2 and b"not a terminal" in r.stderr and b"Traceback" not in r.stderr


def _gone(pattern: str, timeout: float = 15.0) -> bool:
    """No process whose command line matches is left (15 s is a deadline for a stuck exit, where the
    bug kept neuron-top alive as long as its writer: minutes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if re.search(pattern, cmd) and _alive(int(pid)):
                    left.append(cmd)
        if not left:
            return True
        time.sleep(0.2)
    return False


@needs_shared
def test_q_quits_at_once_with_a_quiet_stdin_pipe() -> None:
    tag = str(uuid.uuid4().int % 10**6).zfill(6)
    t = Tmux(f"sh -c 'cat {SAMPLE_JSONL}; exec sleep 300' | {bin_path('neuron-top')} - --hint-threshold 69.{tag}")
    try:
        t.wait_for(r"ND15 .*%")
        t.keys("q")
        assert _gone(rf"^\S+ \S*neuron-top - --hint-threshold 69.{tag}"), "neuron-top stayed alive behind a quiet pipe"
    finally:
        t.kill()


@needs_shared
def test_q_ends_an_exec_commands_whole_process_group() -> None:
    tag = str(uuid.uuid4().int % 10**6).zfill(6)
    t = Tmux(f"{bin_path('neuron-top')} --exec \"sh -c 'cat {SAMPLE_JSONL}; sleep 3{tag}'\"")
    try:
        t.wait_for(r"ND15 .*%")
        t.keys("q")
        assert t.wait_exit() == 0
        assert _gone(rf"^sleep 3{tag}"), "the command's children outlived neuron-top"
    finally:
        t.kill()


def test_a_stopped_simulator_turns_stale_and_recovers(tmp_path) -> None:
    sock = tmp_path / "sim.sock"
    sim = start_sim(sock)
    t = Tmux(f"{bin_path('neuron-top')} --connect {sock}")
    try:
        t.wait_for(r"ND15 .*%", timeout=30)
        sim.send_signal(signal.SIGSTOP)
        t.wait_for(r"STALE \(no reports\)", timeout=30)
        sim.send_signal(signal.SIGCONT)
        t.wait_for(r"LIVE", timeout=30)
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        sim.send_signal(signal.SIGCONT)
        t.kill()
        sim.kill()


def test_a_server_that_never_says_hello_is_reported(tmp_path) -> None:
    import socket as socketlib

    path = str(tmp_path / "mute.sock")
    srv = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    srv.bind(path)
    srv.listen(5)
    t = Tmux(f"{bin_path('neuron-top')} --connect {path}")
    try:
        t.wait_for(r"sent no hello", timeout=30)
        t.keys("q")
        assert t.wait_exit() == 0
    finally:
        t.kill()
        srv.close()


def test_term_dumb_is_refused_with_one_line() -> None:
    t = Tmux(f"env TERM=dumb {bin_path('neuron-top')} --preset trn1.2xlarge")
    try:
        screen = t.wait_for(r"TERM=dumb", timeout=30)
        assert "Traceback" not in screen
        assert t.wait_exit() == 2
    finally:
        t.kill()


def test_an_unexpected_error_in_the_app_exits_non_zero(tmp_path) -> None:
    # A module that makes the decoder raise something unexpected (not a bad report) on the 3rd line.
    (tmp_path / "sitecustomize.py").write_text(
        "import neurontop.core.telemetry.sample as s\n"
        "_real = s.Decoder.decode\n"
        "def decode(self, line):\n"
        "    self.n_seen = getattr(self, 'n_seen', 0) + 1\n"
        "    if self.n_seen == 3:\n"
        "        raise RuntimeError('injected bug')\n"
        "    return _real(self, line)\n"
        "s.Decoder.decode = decode\n")
    log = tmp_path / "in.jsonl"
    from .conftest import make_reports

    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "healthy", 6)) + b"\n")
    t = Tmux(f"env PYTHONPATH={tmp_path} {bin_path('neuron-top')} --exec 'cat {log}'")
    try:
        assert t.wait_exit(timeout=30) not in (0, -1)
    finally:
        t.kill()
