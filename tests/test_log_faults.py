"""Fault injection against neuron-monitor logs: damaged compression, hostile values, a BOM, a captured
hello line, an empty or truncated log; a failed import leaves no partial profile."""

from __future__ import annotations

import gzip
import json

import pytest
import zstandard

from .conftest import make_reports, run_cli

LINES = make_reports("trn1.2xlarge", "healthy", 40)
RAW = b"\n".join(LINES) + b"\n"


def _one_line_error(r, *words: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err and err.count("\n") == 1, err
    for w in words:
        assert w in err, err


def test_a_bit_flipped_gzip_log_is_an_error(tmp_path) -> None:
    data = bytearray(gzip.compress(RAW))
    data[len(data) // 2] ^= 0x40
    (tmp_path / "a.jsonl.gz").write_bytes(bytes(data))
    for cmd in (["export", str(tmp_path / "a.jsonl.gz"), "-o", "-"], ["diagnose", str(tmp_path / "a.jsonl.gz")],
                ["import", str(tmp_path / "a.jsonl.gz"), "-o", str(tmp_path / "a.ntprof")]):
        # a flip in a literal run still inflates (to a damaged line: text that is not JSON, or a
        # field of the wrong type) before the checksum is reached: either way one line naming the file
        r = run_cli(*cmd)
        _one_line_error(r, "a.jsonl.gz")
        err = r.stderr.decode()
        assert "corrupt" in err or "not JSON" in err or ("line " in err and "invalid report" in err), r.stderr
    assert not list(tmp_path.glob("a.ntprof*"))


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.99])
def test_a_truncated_zstd_log_is_an_error(tmp_path, cut) -> None:
    data = zstandard.ZstdCompressor().compress(RAW)
    path = tmp_path / "t.jsonl.zst"
    path.write_bytes(data[: int(len(data) * cut)])
    _one_line_error(run_cli("export", str(path), "-o", "-"), "t.jsonl.zst", "cut short")
    _one_line_error(run_cli("import", str(path), "-o", str(tmp_path / "t.ntprof")), "cut short")
    assert not list(tmp_path.glob("t.ntprof*"))


def test_several_zstd_frames_read_whole(tmp_path) -> None:
    z = zstandard.ZstdCompressor()
    path = tmp_path / "m.jsonl.zst"
    path.write_bytes(z.compress(b"\n".join(LINES[:20]) + b"\n") + z.compress(b"\n".join(LINES[20:]) + b"\n"))
    r = run_cli("export", str(path), "-o", "-")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 41


@pytest.mark.parametrize(("where", "value", "field"), [
    (("neuron_runtime_data", 0, "report", "memory_used", "neuron_runtime_used_bytes", "usage_breakdown",
      "neuroncore_memory_usage", "0", "tensors"), 2**63, "tensors"),
    (("neuron_runtime_data", 0, "report", "neuroncore_counters", "period"), 1e308, "period"),
    (("system_data", "memory_info", "memory_total_bytes"), -(2**64), "memory_total_bytes"),
])
def test_hostile_values_are_errors_naming_the_field(tmp_path, where, value, field) -> None:
    rep = json.loads(LINES[0])
    obj = rep
    for k in where[:-1]:
        obj = obj[k]
    obj[where[-1]] = value
    path = tmp_path / "h.jsonl"
    path.write_bytes(b"\n".join([LINES[1], json.dumps(rep).encode(), LINES[2]]) + b"\n")
    _one_line_error(run_cli("export", str(path), "-o", "-"), "line 2", field)
    r = run_cli("export", str(path), "-o", "-", "--skip-bad")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 3


def test_a_bom_and_a_captured_hello_are_skipped(tmp_path) -> None:
    hello = json.dumps({"protocol": "neuron-top-telemetry", "version": 1, "device": {}}).encode()
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + hello + b"\n" + RAW)
    r = run_cli("export", str(path), "-o", "-")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 41, r.stderr
    path.write_bytes(b"\xef\xbb\xbf" + RAW)
    r = run_cli("diagnose", str(path), "--json")
    assert r.returncode in (0, 1) and json.loads(r.stdout)["samples"] == 40


def test_an_empty_log_is_an_error_for_every_command(tmp_path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"\n\n")
    _one_line_error(run_cli("export", str(path), "-o", "-"), "e.jsonl")
    _one_line_error(run_cli("diagnose", str(path)), "e.jsonl")
    _one_line_error(run_cli("import", str(path), "-o", str(tmp_path / "e.ntprof")), "e.jsonl")
    assert not list(tmp_path.glob("e.ntprof*"))


def test_a_failed_import_leaves_nothing_and_a_good_one_renames(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(RAW + b'{"neuron_runtime_data": 5}\n')
    _one_line_error(run_cli("import", str(path), "-o", str(tmp_path / "x.ntprof")), "line 41")
    assert not list(tmp_path.glob("x.ntprof*"))
    r = run_cli("import", str(path), "-o", str(tmp_path / "x.ntprof"), "--skip-bad")
    assert r.returncode == 0 and (tmp_path / "x.ntprof").exists() and not list(tmp_path.glob("*.part*"))
    _one_line_error(run_cli("import", str(path), "-o", str(tmp_path / "x.ntprof")), "already exists")


def test_a_core_without_its_utilization_is_a_bad_report_not_zero(tmp_path) -> None:
    rep = json.loads(LINES[0])
    del rep["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]["1"][
        "neuroncore_utilization"]
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\n".join([LINES[1], json.dumps(rep).encode()]) + b"\n")
    _one_line_error(run_cli("export", str(path), "-o", "-"), "line 2", "core 1", "neuroncore_utilization")
    r = run_cli("export", str(path), "-o", "-", "--skip-bad")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 2
