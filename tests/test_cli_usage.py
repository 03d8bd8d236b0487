"""A new user's defects: options that were ignored, a source taken two ways, empty exports, wording."""

from __future__ import annotations

import json
import os
import subprocess
import time

from neurontop.core.analysis.diagnose import diagnose, format_text
from neurontop.core.store.profile import Profile
from neurontop.core.telemetry.sample import Decoder
from neurontop.core.telemetry.units import format_evidence, plural

from .conftest import ROOT, bin_path, make_reports, run_cli

HEALTHY = str(ROOT / "profiles" / "trn1.32xlarge-healthy.ntprof")


def _start_default_sim(runtime_dir) -> subprocess.Popen:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime_dir))
    p = subprocess.Popen([bin_path("devicesim"), "serve", "--preset", "trn1.2xlarge", "--period", "0.2s",
                          "--no-numerics"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock = runtime_dir / "neuron-top" / "devicesim.sock"
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    return p


def _scenarios(path) -> set[str]:
    d = Decoder()
    return {json.loads(raw)["neuron_top"]["truth"]["scenario"] for _, raw in Profile(str(path)).iter_raw()
            if d is not None}


def test_simulator_options_with_a_simulator_running_start_a_private_one(tmp_path) -> None:
    sim = _start_default_sim(tmp_path)
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    try:
        r = run_cli("record", "--count", "3", "-o", str(tmp_path / "a.ntprof"), env=env)
        assert r.returncode == 0, r.stderr
        assert _scenarios(tmp_path / "a.ntprof") == {"healthy"}  # no option: the running simulator
        r = run_cli("record", "--scenario", "input_bound", "--period", "0.2s", "--count", "3",
                    "-o", str(tmp_path / "b.ntprof"), env=env)
        assert r.returncode == 0, r.stderr
        assert _scenarios(tmp_path / "b.ntprof") == {"input_bound"}  # the option asked for, not the running one
        r = run_cli("record", "--preset", "bogus", "--count", "3", "-o", str(tmp_path / "c.ntprof"), env=env)
        assert r.returncode == 2 and b"bogus" in r.stderr and b"Traceback" not in r.stderr
        assert not (tmp_path / "c.ntprof").exists()
    finally:
        sim.terminate()
        sim.wait(10)


def test_lnc_is_an_option_of_the_monitor_and_record(tmp_path) -> None:
    r = run_cli("record", "--preset", "trn2.48xlarge", "--lnc", "2", "--period", "0.2s", "--count", "2",
                "-o", str(tmp_path / "l.ntprof"), env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert json.loads(Profile(str(tmp_path / "l.ntprof")).meta["simulator"])["lnc"] == 2
    r = run_cli("--lnc", "3")
    assert r.returncode == 2 and b"--lnc" in r.stderr


def test_simulator_options_with_another_source_are_refused(tmp_path) -> None:
    for args in (["--connect", str(tmp_path / "x.sock"), "--scenario", "input_bound"],
                 ["record", "-", "--preset", "trn1.2xlarge", "-o", str(tmp_path / "r.ntprof")],
                 ["record", "--exec", "cat", "--seed", "4", "-o", str(tmp_path / "r.ntprof")],
                 ["record", "-", "--connect", "/x.sock", "-o", str(tmp_path / "r.ntprof")]):
        r = run_cli(*args, input=b"")
        assert r.returncode == 2, args
        err = r.stderr.decode()
        assert err.count("\n") == 1 and "error:" in err, err
    assert not (tmp_path / "r.ntprof").exists()


def test_record_takes_connect_and_exec(tmp_path) -> None:
    log = tmp_path / "in.jsonl"
    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "healthy", 5)) + b"\n")
    r = run_cli("record", "--exec", f"cat {log}", "-o", str(tmp_path / "e.ntprof"))
    assert r.returncode == 0, r.stderr
    assert len(Profile(str(tmp_path / "e.ntprof"))) == 5
    sim = _start_default_sim(tmp_path)
    try:
        r = run_cli("record", "--connect", str(tmp_path / "neuron-top" / "devicesim.sock"), "--count", "2",
                    "-o", str(tmp_path / "c.ntprof"))
        assert r.returncode == 0, r.stderr
        assert len(Profile(str(tmp_path / "c.ntprof"))) == 2
    finally:
        sim.terminate()
        sim.wait(10)


def test_an_empty_export_is_an_error_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "o.csv"
    for args, says in ((["--from", "10m"], "--from 600 s"), (["--from", "10", "--to", "5"], "not after"),
                       (["--from", "5", "--to", "5"], "not after")):
        for target in (str(out), "-"):
            r = run_cli("export", HEALTHY, "-o", target, *args)
            assert r.returncode == 2 and says in r.stderr.decode() and r.stdout == b"", (args, target)
    assert not out.exists() and not (tmp_path / "o.csv.part").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    r = run_cli("export", str(empty), "-o", "-")
    assert r.returncode == 2 and b"empty" in r.stderr and r.stdout == b""
    r = run_cli("export", HEALTHY, "-o", str(out), "--from", "20", "--to", "30")
    assert r.returncode == 0 and out.read_text().count("\n") == 12


def test_an_extension_export_cannot_write_is_refused(tmp_path) -> None:
    for name in ("run.json", "run.xlsx", "run.parq"):
        r = run_cli("export", HEALTHY, "-o", str(tmp_path / name))
        assert r.returncode == 2 and name.split(".")[1].encode() in r.stderr and b"Traceback" not in r.stderr
        assert not (tmp_path / name).exists()
    for name in ("run.parquet", "run.arrow", "run.feather"):  # the formats it does write
        r = run_cli("export", HEALTHY, "-o", str(tmp_path / name))
        assert r.returncode == 0 and (tmp_path / name).stat().st_size > 0


def test_counts_read_as_english_and_percentages_keep_the_panes_precision() -> None:
    assert plural(1, "report") == "1 report" and plural(2, "report") == "2 reports" and plural(0, "peer") == "0 peers"
    assert format_evidence("allocated cores", 32, "cores") == "allocated cores 32"
    assert format_evidence("host cores busy", 1.96026, "cores") == "host cores busy 1.96"  # not 1.96026
    assert format_evidence("average utilisation", 6.9405, "%") == "average utilisation 6.9 %"
    d = Decoder()
    samples = [d.decode(x) for x in make_reports("trn1.2xlarge", "idle_cores", 1)]
    text = format_text(diagnose(samples), "one.jsonl")
    assert "1 report," in text and "(s)" not in text and "1 reports" not in text
    assert not any(w in text for w in ("cores 2 cores", "1 peers", "1 vCPUs"))
    for line in text.splitlines():
        if "evidence:" in line:
            for num in line.split("%")[:-1]:
                assert "." in num.rsplit(" ", 2)[-2], line  # every percentage with one decimal


def test_record_stamps_ended_with_the_last_samples_time(tmp_path) -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 20)
    r = run_cli("record", "-", "-o", str(tmp_path / "r.ntprof"), input=b"\n".join(lines) + b"\n")
    assert r.returncode == 0, r.stderr
    prof = Profile(str(tmp_path / "r.ntprof"))
    ended = [t for t, kind, _ in prof.events() if kind == "ended"]
    assert ended == [prof.sample(len(prof) - 1).time_s] and ended[0] > prof.sample(0).time_s


def test_record_from_an_address_nothing_serves_is_an_error(tmp_path) -> None:
    r = run_cli("record", "--connect", str(tmp_path / "nothing.sock"), "-o", str(tmp_path / "n.ntprof"), timeout=60)
    assert r.returncode == 2 and b"nothing.sock" in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
    assert not list(tmp_path.glob("n.ntprof*"))
