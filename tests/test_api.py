"""Parquet and Arrow export, and the Python API: the CSV's rows and values, typed, read back by
pandas, polars and pyarrow; the API's tables equal the command line's."""

from __future__ import annotations

import csv
import math
import sys

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import neurontop
from neurontop import cli
from neurontop.api import InputError

from .conftest import REAL_TRN1, needs_shared

PROFILE = "profiles/trn1.32xlarge-comm_bound.ntprof"


def _csv(path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _same_as_csv(table: pa.Table, header: list[str], rows: list[list[str]]) -> int:
    """Every cell of the table equals the CSV's (empty <-> null); returns the cells compared."""
    assert table.column_names == header and table.num_rows == len(rows)
    checked = 0
    for j, name in enumerate(header):
        col = table.column(name).to_pylist()
        for i, cell in enumerate(r[j] for r in rows):
            v = col[i]
            if name == "timestamp":
                assert v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z" == cell
            elif cell == "":
                assert v is None, (name, i)
            else:
                assert v is not None and float(cell) == float(v), (name, i, cell, v)
            checked += 1
    return checked


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_parquet_and_arrow_hold_the_csvs_values_with_types(tmp_path, fmt: str) -> None:
    out_csv, out = tmp_path / "run.csv", tmp_path / f"run.{fmt}"
    assert cli.main(["export", PROFILE, "-o", str(out_csv), "--fields", "all"]) == 0
    assert cli.main(["export", PROFILE, "-o", str(out), "--fields", "all"]) == 0
    header, rows = _csv(out_csv)
    table = pq.read_table(out) if fmt == "parquet" else pa.ipc.open_file(str(out)).read_all()
    assert _same_as_csv(table, header, rows) == len(header) * len(rows)
    types = dict(zip(table.column_names, table.schema.types, strict=True))
    assert types["timestamp"] == pa.timestamp("ms", tz="UTC") and types["step"] == pa.int64()
    assert types["nd0_hbm_used_bytes"] == pa.int64() and types["hint_communication"] == pa.int64()
    assert types["nd0_nc0_util_pct"] == pa.float64()
    # and the other readers see the same
    df = pl.read_parquet(out) if fmt == "parquet" else pl.read_ipc(out)
    assert df.shape == (len(rows), len(header)) and df["nd0_hbm_used_bytes"].dtype == pl.Int64
    assert df["nd0_nc0_util_pct"].to_list() == [float(r[header.index("nd0_nc0_util_pct")]) for r in rows]
    pdf = pd.read_parquet(out) if fmt == "parquet" else pd.read_feather(out)
    assert list(pdf.columns) == header and len(pdf) == len(rows)
    if fmt == "parquet":
        assert pq.ParquetFile(out).metadata.row_group(0).column(3).compression == "ZSTD"


def test_the_long_layout_has_a_link_column(tmp_path) -> None:
    out = tmp_path / "long.arrow"
    assert cli.main(["export", PROFILE, "-o", str(out), "--fields", "util,links", "--layout", "long"]) == 0
    t = pa.ipc.open_file(str(out)).read_all().to_pylist()
    links = [r for r in t if r["link"] is not None]
    assert links and {r["metric"] for r in links} == {"link_bytes_per_s"}
    assert all(r["link"].startswith("nd") and "-nd" in r["link"] for r in links)
    assert {r["metric"] for r in t if r["link"] is None} == {"util_pct", "efa_bytes_per_s"}
    assert all(r["timestamp"] is not None and r["step"] is not None for r in t)


def test_the_api_gives_the_command_lines_table(tmp_path) -> None:
    out = tmp_path / "cli.arrow"
    assert cli.main(["export", PROFILE, "-o", str(out), "--fields", "util,hbm,hints", "--every", "5s",
                     "--from", "10", "--to", "60"]) == 0
    want = pa.ipc.open_file(str(out)).read_all()
    run = neurontop.open(PROFILE)
    got = run.to_arrow(fields=["util", "hbm", "hints"], every="5s", start=10, end="1:00")
    assert got.equals(want)
    assert run.to_polars(fields="util", every=5).shape[0] == 30
    assert run.to_pandas(fields="hbm")["nd0_hbm_used_bytes"].dtype == pd.Int64Dtype()
    assert run.meta["simulator"]["scenario"] == "comm_bound" and run.meta["samples"] == 150
    hints = run.hints().to_pylist()
    assert hints[0]["cause"] == "communication" and hints[0]["segment"] == 0
    assert run.events().column_names == ["time_s", "kind", "data"]


@needs_shared
def test_the_api_reads_a_neuron_monitor_log_without_conversion() -> None:
    import json

    first = json.loads(REAL_TRN1.read_text().splitlines()[0])
    nc0 = first["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]["0"]
    run = neurontop.open(str(REAL_TRN1))
    t = run.to_arrow(fields="util,vcpu")
    assert t.num_rows == 3 and t.column("nd0_nc0_util_pct").to_pylist()[0] == float(f"{nc0['neuroncore_utilization']:.2f}")
    assert not math.isnan(t.column("host_mem_used_bytes").to_pylist()[0])
    assert run.kind == "log" and run.hints().num_rows >= 0


def test_bad_requests_are_one_line_errors(tmp_path, capsys) -> None:
    assert cli.main(["export", PROFILE, "-o", str(tmp_path / "x.xlsx")]) == 2
    assert "writes .csv, .parquet or .arrow" in capsys.readouterr().err
    assert cli.main(["export", PROFILE, "-o", "-", "--format", "parquet"]) == 2
    assert "only CSV goes to stdout" in capsys.readouterr().err
    assert cli.main(["export", PROFILE, "-o", str(tmp_path / "x.csv"), "--format", "parquet"]) == 2
    assert "does not match" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not after"):
        neurontop.open(PROFILE).to_arrow(start=50, end=10)
    with pytest.raises(ValueError, match="no reports in that range"):
        neurontop.open(PROFILE).to_arrow(start=10_000)
    with pytest.raises(InputError, match="corrupt or truncated profile"):
        (tmp_path / "junk.ntprof").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
        neurontop.open(str(tmp_path / "junk.ntprof"))


def test_to_pandas_without_pandas_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # (an import of it raises ImportError)
    with pytest.raises(ImportError, match=r"Run.to_pandas needs pandas .*pip install pandas"):
        neurontop.open(PROFILE).to_pandas(fields="util")
