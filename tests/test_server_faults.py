"""Fault injection against the simulator server: bad knobs, hostile requests, many clients, tokens,
a planted socket. The server is a real process on a real socket; one bad client never hurts the others."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devicesim.engine import Engine, SimConfig
from devicesim.knobs import KNOBS, KnobError, check
from devicesim.presets import get_preset
from devicesim.server import RateLimitedLog, ServeError, serve

from .conftest import bin_path

FIXED = not os.environ.get("NEURON_TOP_FUZZ")  # derandomized unless asked

PROTO = {"type": "hello", "protocol": "neuron-top-telemetry", "version": 1}


def _serve(tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    sock = str(tmp_path / "s.sock")
    p = subprocess.Popen([bin_path("devicesim"), "serve", "--socket", sock, "--preset", "trn1.2xlarge",
                          "--no-numerics", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert p.poll() is None and time.monotonic() < deadline, p.stderr.read() if p.poll() is not None else ""
        time.sleep(0.05)
    return p, sock


def _client(sock: str) -> tuple[socket.socket, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(sock)
    return s, s.makefile("rb")


def _next_report(f) -> dict:
    while True:
        line = f.readline()
        assert line, "the server closed the connection"
        msg = json.loads(line)
        if "type" not in msg:
            return msg


def _answer(f) -> dict:
    while True:
        line = f.readline()
        assert line, "the server closed the connection"
        msg = json.loads(line)
        if msg.get("type") in ("control_ok", "control_error", "error"):
            return msg


BAD_VALUES = [("host_sync_ms", "nan"), ("host_sync_ms", float("inf")), ("workers", "abc"), ("workers", 0),
              ("workers", 2.5), ("workers", True), ("link_efficiency", 0), ("link_efficiency", 7),
              ("straggler_factor", -1), ("dtype", "fp8"), ("overlap_grad_allreduce", "maybe"), ("seq", 10**400),
              ("nodes", None), ("idle_cores", [1]), ("no_such_knob", 1)]


@pytest.mark.parametrize(("knob", "value"), BAD_VALUES, ids=lambda v: str(v)[:12])
def test_a_bad_knob_is_refused_by_name_and_changes_nothing(knob, value) -> None:
    eng = Engine(SimConfig(get_preset("trn1.2xlarge"), numerics=False))
    before = eng.control({})
    with pytest.raises(ValueError, match=knob if knob != "no_such_knob" else "unknown knob"):
        eng.control({"set": {knob: json.loads(json.dumps(value)) if isinstance(value, float) and
                             math.isfinite(value) else value}})
    assert eng.control({}) == before
    assert all(math.isfinite(v) for v in _numbers(eng.step_window()))


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


_values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.text(max_size=6), st.none(), st.sampled_from(["bf16", "fp32", "none", "full", "true"]))


@settings(max_examples=150, deadline=None, derandomize=FIXED)
@given(knob=st.sampled_from(sorted(KNOBS)), value=_values)
def test_any_knob_value_is_applied_with_a_finite_stream_or_refused(knob, value) -> None:
    eng = Engine(SimConfig(get_preset("trn1.2xlarge"), numerics=False))
    try:
        eng.control({"set": {knob: value}})
    except ValueError as exc:
        assert knob in str(exc)
    report = eng.step_window()
    assert all(math.isfinite(v) for v in _numbers(report))


def test_knob_text_from_the_command_line_is_typed() -> None:
    assert check("workers", "8") == 8 and check("overlap_grad_allreduce", "off") is False
    assert check("link_efficiency", "0.5") == 0.5
    with pytest.raises(KnobError, match="host_sync_ms"):
        check("host_sync_ms", "nan")


def test_cli_refuses_a_bad_knob_with_one_line(tmp_path) -> None:
    r = subprocess.run([bin_path("devicesim"), "serve", "--stdout", "--count", "1", "--set", "host_sync_ms=nan"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "host_sync_ms" in r.stderr and r.stderr.count("\n") == 1 and r.stdout == ""


def test_bad_control_requests_never_stop_the_stream_for_others(tmp_path) -> None:
    sim, sock = _serve(tmp_path, "--period", "0.1s")
    try:
        _, reader = _client(sock)
        _next_report(reader)
        ctl, cf = _client(sock)
        ctl.sendall(json.dumps(PROTO).encode() + b"\n")
        for knob, value in (("host_sync_ms", float("nan")), ("workers", "abc"), ("workers", 0)):
            ctl.sendall(json.dumps({"type": "control", "set": {knob: value}}).encode() + b"\n")
            ans = _answer(cf)
            assert ans["type"] == "control_error" and knob in ans["error"]
        ctl.sendall(json.dumps({"type": "control", "pause": "yes"}).encode() + b"\n")
        assert _answer(cf)["type"] == "control_error"
        t0 = _next_report(reader)["neuron_top"]["time_s"]
        for _ in range(3):
            t1 = _next_report(reader)["neuron_top"]["time_s"]
        assert t1 > t0
        ctl.sendall(json.dumps({"type": "control", "set": {"workers": 2}}).encode() + b"\n")
        assert _answer(cf)["state"]["knobs"]["workers"] == 2
        assert sim.poll() is None
    finally:
        sim.terminate()
        sim.wait(10)


@pytest.mark.parametrize("payload", [b"[" * 30000 + b"]" * 30000, b'{"type": "control", "x": ' + b"9" * 5000 + b"}",
                                     json.dumps({**PROTO, "version": True}).encode(),
                                     json.dumps({**PROTO, "version": 1.0}).encode()],
                         ids=["nested", "long-int", "version-true", "version-float"])
def test_hostile_requests_get_an_error_line_and_others_go_on(tmp_path, payload) -> None:
    sim, sock = _serve(tmp_path, "--period", "0.1s")
    try:
        _, reader = _client(sock)
        bad, bf = _client(sock)
        bad.sendall(payload + b"\n")
        ans = _answer(bf)
        assert ans["type"] == "error" and ans["error"]
        _next_report(reader)
        _next_report(reader)
        assert sim.poll() is None
    finally:
        sim.terminate()
        sim.wait(10)
    assert b"Traceback" not in sim.stderr.read()


def test_tokens(tmp_path) -> None:
    def run(*args, env=None):
        return subprocess.run([bin_path("devicesim"), "serve", "--listen", "127.0.0.1:0", "--count", "1",
                               "--speed", "max", "--no-numerics", "--preset", "trn1.2xlarge", *args],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})

    r = run("--token", "")
    assert r.returncode != 0 and "empty" in r.stderr
    r = run(env={"DEVICESIM_TOKEN": ""})
    assert r.returncode != 0 and "empty" in r.stderr
    (tmp_path / "tok").write_text("\n")
    r = run("--token-file", str(tmp_path / "tok"))
    assert r.returncode != 0 and "empty" in r.stderr
    r = run("--token", "s3cret")
    assert r.returncode == 0 and "readable by every local user" in r.stderr
    (tmp_path / "tok").write_text("s3cret\n")
    os.chmod(tmp_path / "tok", 0o600)
    r = run("--token-file", str(tmp_path / "tok"))
    assert r.returncode == 0 and "warning" not in r.stderr


def test_a_non_loopback_listen_address_is_warned_about() -> None:
    r = subprocess.run([bin_path("devicesim"), "serve", "--listen", "0.0.0.0:0", "--count", "1", "--speed", "max",
                        "--no-numerics", "--preset", "trn1.2xlarge"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "not a loopback address" in r.stderr


def test_client_cap_refuses_or_drops_the_slowest(tmp_path) -> None:
    sim, sock = _serve(tmp_path, "--max-clients", "3", "--period", "1s")
    try:
        held = [_client(sock) for _ in range(3)]
        for _, f in held:
            f.readline()  # hello: all three are served
        _, f4 = _client(sock)
        msg = json.loads(f4.readline())
        assert msg["type"] == "error" and "server full" in msg["error"]
        assert sim.poll() is None
    finally:
        sim.terminate()
        sim.wait(10)
    sim, sock = _serve(tmp_path, "--max-clients", "2", "--client-queue", "2", "--speed", "max")
    try:
        stuck = [_client(sock) for _ in range(2)]  # they never read: their queues fill
        deadline = time.monotonic() + 60  # (until their queues are full: a busy machine takes longer)
        while True:
            _, f3 = _client(sock)
            first = json.loads(f3.readline())
            if first.get("protocol") == "neuron-top-telemetry" or time.monotonic() > deadline:
                break
            assert "server full" in first["error"]  # not yet slow enough to be dropped: try again
            time.sleep(0.3)
        assert first.get("protocol") == "neuron-top-telemetry", first  # served: a slow one made room
        _next_report(f3)
        closed = 0
        for s, _ in stuck:  # read what each has buffered: the dropped one ends, the other keeps streaming
            s.settimeout(10)
            got = 0
            try:
                while got < 64 << 20 and (chunk := s.recv(1 << 20)):
                    got += len(chunk)
                else:
                    closed += got < 64 << 20
            except ConnectionError:
                closed += 1
        assert closed >= 1
    finally:
        sim.terminate()
        sim.wait(10)


def test_a_controller_that_never_reads_is_not_buffered_without_bound(tmp_path) -> None:
    sim, sock = _serve(tmp_path, "--period", "1s")
    try:
        ctl, _ = _client(sock)
        ctl.sendall(json.dumps(PROTO).encode() + b"\n")
        ctl.setblocking(False)
        req = json.dumps({"type": "control", "pause": False}).encode() + b"\n"
        sent, blocked = 0, False
        deadline = time.monotonic() + 60
        while sent < 400_000 and time.monotonic() < deadline:
            try:
                ctl.send(req)
                sent += 1
            except BlockingIOError:
                time.sleep(0.2)  # give the server every chance to read on
                try:
                    ctl.send(req)
                    sent += 1
                except BlockingIOError:
                    blocked = True
                    break
        assert blocked, f"the server read {sent} requests whose replies nobody read"
        assert sim.poll() is None
    finally:
        sim.terminate()
        sim.wait(10)


def test_failures_are_logged_once_per_kind(capsys, monkeypatch) -> None:
    log = RateLimitedLog()
    for _ in range(500):
        log("accept", "socket.accept() out of system resource")
    log("other", "something else")
    err = capsys.readouterr().err
    assert err.count("\n") == 2
    clock = [time.monotonic() + 11]
    monkeypatch.setattr("devicesim.server.time.monotonic", lambda: clock[0])
    log("accept", "socket.accept() out of system resource")
    assert "and 499 more" in capsys.readouterr().err


def test_an_engine_failure_is_told_to_every_client_and_the_server_exits_non_zero(tmp_path) -> None:
    eng = Engine(SimConfig(get_preset("trn1.2xlarge"), numerics=False, period_s=0.1))
    real = eng.step_window
    calls = {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise ZeroDivisionError("boom")
        return real(*a, **k)

    eng.step_window = failing  # type: ignore[method-assign]
    sock = str(tmp_path / "e.sock")
    result: dict = {}

    def run() -> None:
        try:
            serve(eng, 1.0, socket_path=sock)
        except ServeError as exc:
            result["error"] = str(exc)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    _, f = _client(sock)
    msg = _answer(f)
    assert msg["type"] == "error" and "boom" in msg["error"]
    th.join(30)
    assert "boom" in result.get("error", "")


def test_a_planted_socket_is_not_trusted(tmp_path) -> None:
    folder = tmp_path / "neuron-top"
    folder.mkdir()
    os.chmod(folder, 0o777)  # as a shared /tmp folder another user made could be
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    planted.bind(str(folder / "devicesim.sock"))
    planted.listen(5)
    try:
        env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
        r = subprocess.run([bin_path("neuron-top"), "record", "--count", "1", "-o", str(tmp_path / "x.ntprof")],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 2 and "not a private folder" in r.stderr
        r = subprocess.run([bin_path("devicesim"), "ctl", "--pause"], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode != 0 and "not a private folder" in r.stderr
        planted.settimeout(0.2)
        with pytest.raises(TimeoutError):
            planted.accept()  # nobody connected to it
    finally:
        planted.close()


@pytest.mark.parametrize(("scenario", "knob", "value"), [("idle_cores", "idle_cores", 4), ("host_sync", "host_sync_ms", 3.0),
                                                         ("hbm_pressure", "extra_tensor_bytes", 0)])
def test_a_set_knob_wins_over_the_scenarios_default(scenario, knob, value) -> None:
    eng = Engine(SimConfig(get_preset("trn1.32xlarge"), scenario=scenario, numerics=False, overrides={knob: value}))
    assert getattr(eng.knobs, knob) == value
    assert eng.control({"scenario": scenario, "set": {knob: value}})["knobs"][knob] == value


def test_out_of_file_descriptors_is_a_few_lines_not_a_flood(tmp_path) -> None:
    import resource

    sock = str(tmp_path / "fd.sock")
    err_path = tmp_path / "err.txt"
    with open(err_path, "wb") as err:
        sim = subprocess.Popen([bin_path("devicesim"), "serve", "--socket", sock, "--preset", "trn1.2xlarge",
                                "--no-numerics", "--period", "0.5s"], stdout=subprocess.DEVNULL, stderr=err,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40)))
    clients = []
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert time.monotonic() < deadline and sim.poll() is None
            time.sleep(0.05)
        for _ in range(80):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(sock)
            except OSError:
                pass
            clients.append(s)
        deadline = time.monotonic() + 30  # (until it has met the limit; then 2 s more of it)
        while "Too many open files" not in err_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        assert sim.poll() is None
    finally:
        for s in clients:
            s.close()
        sim.terminate()
        sim.wait(10)
    text = err_path.read_text()
    assert "Too many open files" in text and len(text.splitlines()) <= 6 and "Traceback" not in text
