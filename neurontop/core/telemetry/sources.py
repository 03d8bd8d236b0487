"""Telemetry sources: socket (Unix or TCP, reconnecting), command, stdin/file.

Each source is a blocking iterator of events, meant to run in a worker thread: `Line` carries one
report line; `Status` says connected / lost / ended / error / dropped. Sources know nothing of
Textual.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO

PROTOCOL = "neuron-top-telemetry"
PROTOCOL_VERSION = 1
MAX_LINE = 16 * 1024 * 1024  # a report longer than this is garbage, not telemetry


@dataclass(frozen=True)
class Line:
    data: bytes


@dataclass(frozen=True)
class Status:
    state: str  # connected, lost, ended, error, dropped
    detail: str = ""
    info: dict | None = None


Event = Line | Status


def default_socket_path() -> str:
    """Where devicesim listens by default (docs/protocol.md); the two must agree."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(base, "neuron-top") if base else f"/tmp/neuron-top-{os.getuid()}"
    return os.path.join(folder, "devicesim.sock")


def unsafe_socket(path: str) -> str | None:
    """Why a socket in a shared place must not be trusted, or None. As tmux and ssh-agent do: its
    folder is ours with mode 0700 and the socket is ours, so no other user can plant one there."""
    folder = os.path.dirname(path) or "."
    try:
        fst = os.lstat(folder)
        sst = os.lstat(path)
    except OSError:
        return None  # nothing there: nothing to trust
    uid = os.getuid()
    if not stat.S_ISDIR(fst.st_mode) or fst.st_uid != uid or fst.st_mode & 0o077:
        return f"{folder} is not a private folder of this user (owner uid {fst.st_uid}, mode {fst.st_mode & 0o777:o})"
    if not stat.S_ISSOCK(sst.st_mode) or sst.st_uid != uid:
        return f"{path} is not a socket of this user (owner uid {sst.st_uid})"
    return None


def parse_address(addr: str) -> tuple[str, str | tuple[str, int]]:
    """('unix', path) or ('tcp', (host, port))."""
    if "/" in addr or addr.endswith(".sock") or ":" not in addr:
        return "unix", addr
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"not a socket path or HOST:PORT: {addr!r}")
    return "tcp", (host.strip("[]") or "127.0.0.1", int(port))


def probe(addr: str, timeout: float = 0.3) -> bool:
    """Is a simulator serving at this address?"""
    kind, target = parse_address(addr)
    try:
        s = _connect(kind, target, timeout)
    except OSError:
        return False
    s.close()
    return True


def _connect(kind: str, target, timeout: float) -> socket.socket:
    if kind == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(target)
        except OSError:
            s.close()
            raise
        return s
    return socket.create_connection(target, timeout=timeout)


HELLO_TIMEOUT_S = 5.0


class SocketSource:
    """Reads a devicesim socket; on loss, reconnects with exponential backoff (0.1 s .. 2 s)."""

    def __init__(self, addr: str, reconnect: bool = True) -> None:
        self.addr = addr
        self.kind, self.target = parse_address(addr)
        self.reconnect = reconnect
        self.label = f"socket {addr}"
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def send(self, request: dict) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.sendall(json.dumps(request).encode() + b"\n")

    def events(self) -> Iterator[Event]:
        delay = 0.1
        lost_reported = False
        while not self._stop.is_set():
            try:
                sock = _connect(self.kind, self.target, 2.0)
            except OSError as exc:
                if not lost_reported:
                    yield Status("lost", f"cannot connect to {self.addr}: {exc.strerror or exc}")
                    lost_reported = True
                if not self.reconnect:
                    return
                self._stop.wait(delay)
                delay = min(2.0, delay * 2)
                continue
            sock.settimeout(HELLO_TIMEOUT_S)  # a server that never greets must not leave us CONNECTING
            with self._lock:
                self._sock = sock
            try:
                f = sock.makefile("rb")
                try:
                    hello_raw = f.readline(MAX_LINE)
                except TimeoutError:
                    hello_raw = None
                try:
                    hello = json.loads(hello_raw) if hello_raw is not None else None
                except ValueError:
                    hello = None
                if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL:
                    # a server that never greets must not leave us CONNECTING, nor one that greets wrongly
                    why = (f"sent no hello within {HELLO_TIMEOUT_S:.0f} s: is it a devicesim? (retrying)"
                           if hello_raw is None else f"did not greet with the {PROTOCOL} protocol")
                    yield Status("error", f"{self.addr} {why}")
                    sock.close()
                    if not self.reconnect:
                        return
                    self._stop.wait(delay)
                    delay = min(2.0, delay * 2)
                    continue
                sock.settimeout(None)  # after the hello: silence is STALE in the view, not an error here
                if hello.get("version") != PROTOCOL_VERSION:
                    yield Status("error", f"{self.addr} speaks protocol version {hello.get('version')}, "
                                          f"this neuron-top speaks {PROTOCOL_VERSION}")
                    return
                self.send({"type": "hello", "protocol": PROTOCOL, "version": PROTOCOL_VERSION})
                delay = 0.1
                lost_reported = False
                yield Status("connected", self.addr, hello)
                while not self._stop.is_set():
                    line = f.readline(MAX_LINE)
                    if not line:
                        break
                    if not line.endswith(b"\n"):
                        if len(line) >= MAX_LINE:
                            yield Status("error", f"line longer than {MAX_LINE} bytes from {self.addr}")
                            break
                        break  # connection closed mid-line
                    if line.startswith(b'{"type"'):
                        try:
                            msg = json.loads(line)
                        except (ValueError, RecursionError):
                            msg = None
                        if not isinstance(msg, dict):
                            yield Line(line)  # not a message after all: the decoder counts it as a bad line
                            continue
                        if msg.get("type") == "dropped":
                            yield Status("dropped", f"{msg.get('count', 0)} reports dropped (slow reader)")
                        elif msg.get("type") == "error":
                            yield Status("error", str(msg.get("error")))
                        continue
                    yield Line(line)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._sock = None
                sock.close()
            if self._stop.is_set():
                return
            yield Status("lost", f"connection to {self.addr} lost; reconnecting")
            lost_reported = True
            if not self.reconnect:
                return


def _read_lines(stream: IO[bytes], stop: threading.Event) -> Iterator[bytes]:
    """The stripped lines of a pipe or file, waiting at most 0.25 s at a time, so that a close()
    from another thread ends the reader at once even when the writer is silent (a blocking read
    of a quiet pipe cannot be interrupted)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream: it never blocks
        for line in stream:
            if stop.is_set():
                return
            yield line.strip()
        return
    buf = b""
    while not stop.is_set():
        ready, _, _ = select.select([fd], [], [], 0.25)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield line.strip()
        if len(buf) > MAX_LINE:  # no newline for megabytes: not a report stream
            yield buf.strip()
            buf = b""
    if buf.strip() and not stop.is_set():
        yield buf.strip()


def _is_report(line: bytes) -> bool:
    return bool(line) and not line.startswith(b'{"type"')  # (a hello or message captured with the reports)


class StreamSource:
    """Reads report lines from a binary stream (stdin, a pipe, a plain file)."""

    def __init__(self, stream: BinaryIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def events(self) -> Iterator[Event]:
        yield Status("connected", self.label)
        for line in _read_lines(self.stream, self._stop):
            if _is_report(line):
                yield Line(line)
        if not self._stop.is_set():
            yield Status("ended", f"{self.label}: end of input")


class CommandSource:
    """Runs a command (e.g. `neuron-monitor -c mon.json`) and reads its stdout. The command runs in a
    process group of its own, ended as a whole on close (`sh -c '...'` leaves no child behind)."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.label = f"exec {command}"
        self.proc: subprocess.Popen | None = None
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        p = self.proc
        if p and p.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def events(self) -> Iterator[Event]:
        try:
            self.proc = subprocess.Popen(shlex.split(self.command), stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        except (OSError, ValueError) as exc:
            yield Status("error", f"cannot run {self.command!r}: {exc}")
            return
        yield Status("connected", self.label)
        assert self.proc.stdout
        for line in _read_lines(self.proc.stdout, self._stop):
            if _is_report(line):
                yield Line(line)
        if self._stop.is_set():
            return
        code = self.proc.wait()
        yield Status("ended", f"command exited with status {code}")


def wait_for_socket(path: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and probe(path):
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False
