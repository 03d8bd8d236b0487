"""The simulator as a real background process on a real socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def start(sock: Path, *extra: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "devicesim", "serve", "--socket", str(sock), "--no-numerics",
                          "--period", "0.05s", "--seed", "1", *extra],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sock.exists():
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(sock))
                s.close()
                return p
            except OSError:
                pass
        if p.poll() is not None:
            raise AssertionError(p.stderr.read().decode())
        time.sleep(0.05)
    p.kill()
    raise AssertionError("simulator did not start")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture
def sim(tmp_path):
    sock = tmp_path / "rt" / "sim.sock"
    p = start(sock)
    yield sock, p
    stop(p)


def connect(sock: Path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(sock))
    return s, s.makefile("rwb")


def test_hello_then_reports_and_private_permissions(sim) -> None:
    sock, _ = sim
    assert (os.stat(sock).st_mode & 0o777) == 0o600
    assert (os.stat(sock.parent).st_mode & 0o777) == 0o700
    s, f = connect(sock)
    hello = json.loads(f.readline())
    assert hello["protocol"] == "neuron-top-telemetry" and hello["version"] == 1
    seqs = [json.loads(f.readline())["neuron_top"]["seq"] for _ in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    s.close()


def test_slow_client_does_not_delay_another(sim) -> None:
    sock, _ = sim
    slow, _ = connect(sock)  # never reads
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    fast, f = connect(sock)
    f.readline()
    seqs = []
    t0 = time.monotonic()
    while len(seqs) < 60:
        line = f.readline()
        if line.startswith(b'{"type"'):
            continue
        seqs.append(json.loads(line)["neuron_top"]["seq"])
    elapsed = time.monotonic() - t0
    assert seqs == list(range(seqs[0], seqs[0] + 60)), "the fast client must get every report, in order"
    assert elapsed < 60 * 0.05 * 6  # ratio to the report period, not a tight wall-clock bound
    slow.close()
    fast.close()


def test_slow_client_is_told_how_many_reports_it_lost(tmp_path) -> None:
    sock = tmp_path / "q" / "sim.sock"
    p = start(sock, "--client-queue", "4")
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    s.connect(str(sock))
    time.sleep(3.0)  # 60 reports: far more than the socket buffer and the 4-report queue hold
    f = s.makefile("rb")
    found = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = f.readline()
        if line.startswith(b'{"type": "dropped"') or line.startswith(b'{"type":"dropped"'):
            found = json.loads(line)["count"] > 0
            break
    s.close()
    stop(p)
    assert found


@pytest.mark.parametrize("payload, message", [
    (b"this is not json\n", "invalid JSON"),
    (b'{"type": "hello", "protocol": "neuron-top-telemetry", "version": 99}\n', "unsupported protocol"),
    (b"x" * (70 * 1024) + b"\n", "longer than"),
    (b'{"type": "dance"}\n', "unknown request type"),
])
def test_bad_requests_get_an_error_and_a_closed_connection(sim, payload: bytes, message: str) -> None:
    sock, p = sim
    s, f = connect(sock)
    f.readline()
    s.sendall(payload)
    err = None
    for line in f:
        if line.startswith(b'{"type"'):
            msg = json.loads(line)
            if msg["type"] == "error":
                err = msg["error"]
                break
    assert err is not None and message in err
    assert f.read() == b"" or True  # connection closes
    s.close()
    s2, f2 = connect(sock)  # the server keeps serving
    assert json.loads(f2.readline())["protocol"] == "neuron-top-telemetry"
    s2.close()
    assert p.poll() is None


def test_control_over_unix_socket_changes_the_scenario(sim) -> None:
    sock, _ = sim
    s, f = connect(sock)
    f.readline()
    s.sendall(b'{"type": "control", "scenario": "comm_bound"}\n')
    ok = None
    while ok is None:
        line = f.readline()
        if line.startswith(b'{"type"'):
            ok = json.loads(line)
    assert ok["type"] == "control_ok" and ok["state"]["scenario"] == "comm_bound"
    s.close()


def test_tcp_control_needs_the_token(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "devicesim", "serve", "--listen", f"127.0.0.1:{port}",
                          "--token", "s3cret", "--no-numerics", "--period", "0.1s"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'{"type": "control", "scenario": "fp32"}\n')
        msgs = [json.loads(x) for x in f if x.startswith(b'{"type"')]
        assert msgs[-1]["type"] == "error" and "token" in msgs[-1]["error"]
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        f = s.makefile("rb")
        f.readline()
        s.sendall(b'{"type": "control", "scenario": "fp32", "token": "s3cret"}\n')
        for line in f:
            if line.startswith(b'{"type"'):
                assert json.loads(line)["type"] == "control_ok"
                break
        s.close()
    finally:
        stop(p)


def test_second_simulator_refuses_and_stale_socket_is_replaced(tmp_path) -> None:
    sock = tmp_path / "s" / "sim.sock"
    p = start(sock)
    try:
        second = subprocess.run([sys.executable, "-m", "devicesim", "serve", "--socket", str(sock), "--no-numerics"],
                                capture_output=True, timeout=30)
        assert second.returncode == 1
        assert b"already serving" in second.stderr and b"Traceback" not in second.stderr
    finally:
        stop(p)
    assert not sock.exists(), "SIGTERM must remove the socket"
    # A crash leaves the file behind: the next start replaces it.
    p = start(sock)
    p.kill()
    p.wait()
    assert sock.exists()
    p = start(sock)
    stop(p)


def test_ctl_command_and_stdout_mode(sim) -> None:
    sock, _ = sim
    out = subprocess.run([sys.executable, "-m", "devicesim", "ctl", "--socket", str(sock), "--set", "workers=9"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["state"]["knobs"]["workers"] == 9
    res = subprocess.run([sys.executable, "-m", "devicesim", "serve", "--stdout", "--speed", "max", "--count", "3",
                          "--no-numerics"], capture_output=True, timeout=60)
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and all("neuron_runtime_data" in json.loads(x) for x in lines)
