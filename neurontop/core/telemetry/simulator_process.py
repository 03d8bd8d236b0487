"""Start the device simulator as a separate process on a private socket, and stop it reliably.

The simulator runs as `python -m devicesim serve` (never imported). It dies with neuron-top: on
quit, on Ctrl-C, on a crash of the UI (atexit), when the terminal closes (SIGHUP reaches the whole
foreground process group) and even when neuron-top is killed (Linux PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import tempfile

from .sources import wait_for_socket


class SimulatorError(Exception):
    pass


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class EmbeddedSimulator:
    def __init__(self, preset: str, scenario: str, seed: int, period_s: float,
                 extra_args: list[str] | None = None) -> None:
        folder = tempfile.mkdtemp(prefix=f"neuron-top-{os.getuid()}-")
        os.chmod(folder, 0o700)
        self.folder = folder
        self.socket = os.path.join(folder, "sim.sock")
        self.args = [sys.executable, "-m", "devicesim", "serve", "--preset", preset, "--scenario", scenario,
                     "--seed", str(seed), "--period", f"{period_s}s", "--socket", self.socket, *(extra_args or [])]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> str:
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        if not wait_for_socket(self.socket, timeout, self.proc):
            err = b""
            if self.proc.poll() is not None and self.proc.stderr:
                err = self.proc.stderr.read()
            self.stop()
            msg = err.decode(errors="replace").strip().splitlines()
            raise SimulatorError(msg[-1] if msg else f"the simulator did not start within {timeout:.0f} s")
        return self.socket

    def stop(self) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p is not None and p.stderr:
            p.stderr.close()
        for path in (self.socket,):
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.rmdir(self.folder)
        except OSError:
            pass
