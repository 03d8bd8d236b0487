"""CSV export: fixed header, row counts, value ranges, determinism, long layout and resampling."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurontop.core.export.exporter import Column, Exporter, parse_fields
from neurontop.core.export.writers import csv_exporter
from neurontop.core.telemetry.sample import Decoder

from .conftest import SAMPLE_JSONL, make_reports, needs_shared, run_cli


def export_lines(lines, **kw) -> str:
    out = io.StringIO()
    ex = csv_exporter(out, kw.pop("groups", ("util",)), **kw)
    d = Decoder()
    for x in lines:
        ex.add(d.decode(x))
    ex.finish()
    return out.getvalue()


def test_header_rows_ranges_and_determinism() -> None:
    lines = make_reports("trn1.32xlarge", "straggler", 20)
    text = export_lines(lines, groups=parse_fields("all"))
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    assert header[:3] == ["time_s", "timestamp", "step"]
    assert header[3] == "nd0_nc0_util_pct" and "nd15_nc1_util_pct" in header
    assert "nd0_nc0_flops_tflops" in header and "nd0_nc0_tensor_active_pct" in header
    assert "link_nd0_nd1_bytes_per_s" in header and "hint_straggler" in header
    assert len(rows) == 21 and all(len(r) == len(header) for r in rows)
    for r in rows[1:]:
        assert r[1].endswith("Z")
        for name, cell in zip(header, r, strict=True):
            if name.endswith("_pct") and cell:
                assert 0.0 <= float(cell) <= 100.0
            if name.endswith("_bytes") or name.endswith("bytes_per_s"):
                assert cell == "" or cell.isdigit()
    assert text == export_lines(lines, groups=parse_fields("all"))


def test_column_set_is_fixed_by_the_first_row() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 4)
    from .conftest import strip_extension

    mixed = lines[:2] + strip_extension(lines[2:])  # the extension disappears mid-stream
    rows = list(csv.reader(io.StringIO(export_lines(mixed, groups=("util", "engines")))))
    assert all(len(r) == len(rows[0]) for r in rows)
    assert rows[3][-1] == ""  # engines unknown: empty cell, not a shifted row


def test_long_layout_and_every_against_a_hand_computation() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 10, period=1.0)
    d = Decoder()
    samples = [d.decode(x) for x in lines]
    t = np.array([s.time_s for s in samples]) - samples[0].time_s
    u = np.array([s.util for s in samples])
    wide = list(csv.DictReader(io.StringIO(export_lines(lines, every_s=4.0))))
    assert [float(r["time_s"]) for r in wide] == [0.0, 4.0, 8.0]
    for r, lo in zip(wide, (0, 4, 8), strict=True):
        sel = (t >= lo - 1e-9) & (t < lo + 4 - 1e-9)
        assert float(r["nd0_nc1_util_pct"]) == pytest.approx(u[sel, 1].mean(), abs=0.006)
    long = list(csv.DictReader(io.StringIO(export_lines(lines, layout="long"))))
    assert list(long[0]) == ["time_s", "timestamp", "step", "device", "core", "link", "metric", "value"]
    assert len(long) == 10 * 2
    row = next(r for r in long if r["core"] == "1" and float(r["time_s"]) == 3.0)
    assert float(row["value"]) == pytest.approx(u[3, 1], abs=0.006) and row["metric"] == "util_pct"


def test_cli_export_range_stdout_and_fields(tmp_path) -> None:
    log = tmp_path / "r.jsonl"
    log.write_bytes(b"\n".join(make_reports("trn1.2xlarge", "healthy", 30)) + b"\n")
    r = run_cli("export", str(log), "-o", "-", "--from", "5s", "--to", "0:14", "--fields", "util,training")
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout.decode())))
    assert len(rows) == 1 + 10 and "loss" in rows[0] and float(rows[1][0]) == 5.0
    bad = run_cli("export", str(log), "-o", "-", "--fields", "colour")
    assert bad.returncode == 2 and b"unknown field group" in bad.stderr


@needs_shared
def test_export_plain_neuron_monitor_log_has_no_unknown_columns() -> None:
    r = run_cli("export", str(SAMPLE_JSONL), "-o", "-", "--fields", "all")
    rows = list(csv.reader(io.StringIO(r.stdout.decode())))
    assert r.returncode == 0 and len(rows) == 2
    assert "nd15_nc3_util_pct" in rows[0] and not any("tensor_active" in c for c in rows[0])


@needs_shared
def test_log_clock_prepass_matches_the_decoder(tmp_path) -> None:
    """export estimates a log's start from a cheap clock-only pass; it must agree with full decoding."""
    from neurontop.core.telemetry.logs import log_duration, log_samples

    from .conftest import REAL_TRN1, strip_extension

    plain = tmp_path / "p.jsonl"
    plain.write_bytes(b"\n".join(strip_extension(make_reports("trn1.2xlarge", "healthy", 7, period=0.5))) + b"\n")
    for path in (plain, REAL_TRN1, SAMPLE_JSONL):
        assert log_duration(str(path)) == pytest.approx(list(log_samples(str(path)))[-1].time_s)


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_export_to_a_full_disk_is_one_clear_line() -> None:
    import subprocess

    from .conftest import ROOT, bin_path

    prof = ROOT / "profiles" / "trn1.32xlarge-healthy.ntprof"
    with open("/dev/full", "wb") as full:
        r = subprocess.run([bin_path("neuron-top"), "export", str(prof), "-o", "-", "--fields", "all"],
                           stdout=full, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 2
    assert r.stderr.decode().strip() == "neuron-top: error: stdout: write failed: No space left on device"


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_the_csv_file_is_an_oserror_with_its_errno() -> None:
    """polars writes an output file through its descriptor and reports a failed write as an OSError
    without an errno ("... (os error 28)"); the sink gives it back its errno, which the command line's
    one-line error names ("write failed: No space left on device")."""
    import errno

    import polars as pl

    from neurontop.core.export.writers import CsvSink

    cols = [Column("x", "util", 2)]
    frame = pl.DataFrame({"time_s": np.arange(200_000) * 0.1, "x": np.ones(200_000)}).lazy()
    with open("/dev/full", "wb") as full, pytest.raises(OSError) as err:
        CsvSink(full)(frame, cols)
    assert err.value.errno == errno.ENOSPC and err.value.strerror == "No space left on device"


def test_stdout_closing_early_is_quiet_but_a_pipe_of_our_own_is_an_error() -> None:
    """`export -o - | head` ends quietly (exit 0); a broken pipe that is not stdout's (the export's
    reader process, the simulator's socket) is a one-line error (exit 2), not a silent success."""
    import subprocess
    import sys

    from .conftest import ROOT, bin_path

    prof = ROOT / "profiles" / "trn1.32xlarge-healthy.ntprof"
    r = subprocess.run(f"'{bin_path('neuron-top')}' export '{prof}' --fields all -o - | head -c 100 >/dev/null; "
                       "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stderr == b""
    code = ("import sys, neurontop.cli as cli\n"
            "def broken(args):\n    raise BrokenPipeError(32, 'Broken pipe')\n"
            "cli.cmd_export = broken\n"
            "sys.exit(cli.main(['export', 'x.ntprof', '-o', 'x.csv']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "pipe" in lines[0] and "Traceback" not in lines[0]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=50),
       st.integers(-20_000, 20_000))
def test_csv_decimal_cast_rounds_as_numpy_does(decimals: int, xs: list[float], tie: int) -> None:
    """The CSV sink casts float columns to decimals without rounding them first (CsvSink.rounds):
    the cast must give np.round's digits, ties (half to even) and near-ties included."""
    import polars as pl

    x = np.array([*xs, (tie + 0.5) / 10**decimals, *np.round(xs, decimals + 1)])
    as_text = lambda v: pl.Series(v).cast(pl.Decimal(38, decimals)).cast(pl.String).to_list()  # noqa: E731
    assert as_text(x) == as_text(np.round(x, decimals))


def test_csv_with_and_without_the_exporters_rounding_is_the_same() -> None:
    """The same rows exported by a sink that rounds its floats itself and by one that does not (means
    over 3 s bins: integer columns with fractions to round too)."""
    from neurontop.core.export.writers import CsvSink

    lines = make_reports("trn1.2xlarge", "hbm_bound", 12)
    plain = export_lines(lines, groups=parse_fields("all"), every_s=3.0)

    class Unrounded(CsvSink):
        rounds = False  # the exporter rounds every column first

    out = io.StringIO()
    ex = Exporter(Unrounded(out), parse_fields("all"), every_s=3.0)
    d = Decoder()
    for x in lines:
        ex.add(d.decode(x))
    ex.finish()
    assert out.getvalue() == plain
