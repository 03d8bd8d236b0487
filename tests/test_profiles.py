"""Profiles: real SQLite files; round trip, crash safety, seek, bad input."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import time

import numpy as np
import pytest
import zstandard

from neurontop.core.export.writers import csv_exporter
from neurontop.core.store import colcodec
from neurontop.core.store.profile import Profile, ProfileError
from neurontop.core.store.recorder import Recorder, import_log
from neurontop.core.store.replay import ReplayClock, parse_jump
from neurontop.core.telemetry.logs import InputError
from neurontop.core.telemetry.sample import Decoder

from .conftest import bin_path, make_reports, run_cli


def record(path, lines):
    rec = Recorder(str(path), {"simulator": {"preset": "trn1.32xlarge"}})
    d = Decoder()
    for k, line in enumerate(lines):
        rec.append(line, d.decode(line), now=float(k))  # a commit every second of this fake clock
    rec.close()


def test_round_trip_sample_for_sample(tmp_path) -> None:
    lines = make_reports("trn1.32xlarge", "comm_bound", 40)
    path = tmp_path / "r.ntprof"
    record(path, lines)
    prof = Profile(str(path))
    assert [raw for _, raw in prof.iter_raw()] == lines
    d = Decoder()
    live = [d.decode(x) for x in lines]
    for a, b in zip(live, prof.iter_samples(), strict=True):
        assert a.time_s == b.time_s
        assert np.array_equal(a.util, b.util) and np.array_equal(a.hbm_rate, b.hbm_rate)
    # Random access decodes with the previous sample, so rates match too.
    assert np.array_equal(prof.sample(17).hbm_rate, live[17].hbm_rate)
    with sqlite3.connect(path) as db:  # inspectable with sqlite3 alone
        assert db.execute("SELECT count(*) FROM samples").fetchone()[0] == 40
        assert db.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()[0] == "2"
        # closing compacted the JSON-lines chunks into one columnar chunk
        blobs = [r[0] for r in db.execute("SELECT data FROM chunks")]
    assert len(blobs) == 1 and colcodec.is_columnar(zstandard.ZstdDecompressor().decompress(blobs[0]))


def test_export_of_a_profile_equals_export_of_the_live_stream(tmp_path) -> None:
    lines = make_reports("trn1.2xlarge", "input_bound", 30)
    path = tmp_path / "r.ntprof"
    record(path, lines)
    a, b = io.StringIO(), io.StringIO()
    d = Decoder()
    for out, samples in ((a, (d.decode(x) for x in lines)), (b, Profile(str(path)).iter_samples())):
        ex = csv_exporter(out, ("util", "flops", "hbm", "training", "hints"))
        for s in samples:
            ex.add(s)
        ex.finish()
    assert a.getvalue() == b.getvalue() and a.getvalue().count("\n") == 31


def _committed(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM samples").fetchone()[0]
    except sqlite3.Error:
        return 0  # (the schema is not written yet)


def _wait_committed(path, n: int, timeout: float = 60.0) -> int:
    # A deadline for a stalled recorder only, not a margin: a busy machine just takes longer.
    deadline = time.monotonic() + timeout
    while (got := _committed(path)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_sigkill_loses_nothing_the_recorder_had_committed(tmp_path) -> None:
    """The loss is measured against the recorder's own commits, not the wall clock of a busy machine:
    reports it read are committed within its flush period even when no report follows (its timer),
    and a SIGKILL loses none of what was committed; the file still opens and every sample decodes."""
    path = tmp_path / "crash.ntprof"
    lines = make_reports("trn1.2xlarge", "healthy", 60, period=0.1)
    rec = subprocess.Popen([bin_path("neuron-top"), "record", "-", "-o", str(path)], stdin=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        for line in lines[:30]:
            rec.stdin.write(line + b"\n")
        rec.stdin.flush()  # then the stream goes quiet: only the timer can commit these
        assert _wait_committed(path, 30) == 30
        for line in lines[30:45]:
            rec.stdin.write(line + b"\n")
        rec.stdin.flush()
        rec.send_signal(signal.SIGKILL)
        rec.wait(30)
    finally:
        rec.kill()
    prof = Profile(str(path))
    n = len(prof)
    assert 30 <= n <= 45
    samples = list(prof.iter_samples())
    assert len(samples) == n and samples[-1].time_s == prof.sample(n - 1).time_s


def test_seek_lands_on_the_last_sample_at_or_before(tmp_path) -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 50, period=0.5)
    path = tmp_path / "s.ntprof"
    record(path, lines)
    clock = ReplayClock(Profile(str(path)))
    times = clock.times
    rng = np.random.default_rng(0)
    for t in rng.uniform(times[0] - 3, times[-1] + 3, 200):
        i = clock.seek(t)
        tt = min(max(t, times[0]), times[-1])
        assert times[i] <= tt + 1e-9 and (i == len(times) - 1 or times[i + 1] > tt)
    clock.home()
    assert clock.advance(1.0) == [1, 2]  # 1 s at 1x is two samples of 0.5 s
    clock.speed = 4
    assert clock.advance(1.0) == list(range(3, 11))  # 4x: eight samples
    assert clock.slower() == 2 and clock.faster() == 4
    for _ in range(10):
        clock.faster()
    assert clock.speed == 64
    clock.end()
    assert clock.at_end and clock.advance(5.0) == []
    assert parse_jump("+10s", 5) == 15 and parse_jump("1:30", 0) == 90 and parse_jump("-2m", 200) == 80
    assert parse_jump("1m30s", 0) == 90 and parse_jump("+1m30s", 10) == 100 and parse_jump("1h2m3s", 0) == 3723
    for bad in ("abc", "1x", "+", "1:xx", "m"):
        with pytest.raises(ValueError, match="not a time"):
            parse_jump(bad, 0)


def test_import_a_log_and_replay_it(tmp_path) -> None:
    log = tmp_path / "run.jsonl"
    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "healthy", 12)) + b"\n")
    out = tmp_path / "run.ntprof"
    assert import_log(str(log), str(out)) == 12
    assert len(Profile(str(out))) == 12
    r = run_cli("import", str(log), "-o", str(tmp_path / "again.ntprof"))
    assert r.returncode == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "version", "not_sqlite", "missing"])
def test_bad_profiles_give_one_line_and_exit_2(tmp_path, damage: str) -> None:
    path = tmp_path / "p.ntprof"
    record(path, make_reports("trn1.2xlarge", "healthy", 30))
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        data = bytearray(path.read_bytes())
        data[200:] = os.urandom(len(data) - 200)
        path.write_bytes(bytes(data))
    elif damage == "version":
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    elif damage == "not_sqlite":
        path.write_bytes(b"hello, I am a text file\n")
    elif damage == "missing":
        path = tmp_path / "nope.ntprof"
    for cmd in (["export", str(path), "-o", str(tmp_path / "o.csv")], ["replay", str(path)],
                ["diagnose", str(path)]):
        r = run_cli(*cmd)
        assert r.returncode == 2, (cmd, r.stderr)
        err = r.stderr.decode()
        assert "Traceback" not in err and err.count("\n") == 1 and str(path.name) in err
    if damage == "version":
        assert "newer" in err


def test_broken_line_in_a_log_is_named_and_can_be_skipped(tmp_path) -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 10)
    lines[4] = b'{"neuron_runtime_data": [{"pid": "oops"}]}'
    log = tmp_path / "b.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    r = run_cli("export", str(log), "-o", str(tmp_path / "x.csv"))
    assert r.returncode == 2 and b"line 5" in r.stderr and b"pid" in r.stderr
    assert not (tmp_path / "x.csv").exists()  # nothing half-written
    r = run_cli("export", str(log), "-o", str(tmp_path / "x.csv"), "--skip-bad")
    assert r.returncode == 0
    assert (tmp_path / "x.csv").read_text().count("\n") == 10  # header + 9 rows


def test_recorder_refuses_unwritable_places(tmp_path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        Recorder(str(tmp_path / "no" / "such" / "dir.ntprof"))
    p = tmp_path / "exists.ntprof"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="already exists"):
        Recorder(str(p))


def test_record_cli_stores_hint_events(tmp_path) -> None:
    data = b"\n".join(make_reports("trn1.2xlarge", "input_bound", 20)) + b"\n"
    path = tmp_path / "h.ntprof"
    r = subprocess.run([bin_path("neuron-top"), "record", "-", "-o", str(path)], input=data, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    prof = Profile(str(path))
    assert len(prof) == 20
    hints = [e for e in prof.events() if e[1] == "hint"]
    assert hints and hints[0][2]["event"] == "start" and hints[0][2]["cause"] == "input_pipeline"


def test_full_disk_is_a_clear_error(tmp_path) -> None:
    """RLIMIT_FSIZE makes writes fail like a full disk would: one line, exit 2, no traceback."""
    import resource

    data = b"\n".join(make_reports("trn1.32xlarge", "healthy", 40)) + b"\n"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    r = subprocess.run([bin_path("neuron-top"), "record", "-", "-o", str(tmp_path / "full.ntprof")], input=data,
                       capture_output=True, timeout=60, preexec_fn=limit)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "Traceback" not in err and "full.ntprof" in err
