"""The field catalogue: the docs' column table, the batch columns and the export come from it, and a
figure added to it reaches a decoded sample, a batch (either way it is built) and the CSV."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from neurontop import cli
from neurontop.core.export.exporter import columns_for_layout, parse_fields
from neurontop.core.store.profile import Profile
from neurontop.core.telemetry import batch as B
from neurontop.core.telemetry import fields
from neurontop.core.telemetry.fields import Field
from neurontop.core.telemetry.sample import Decoder

from .conftest import make_reports

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_column_table_is_the_catalogues() -> None:
    doc = (ROOT / "docs" / "export.md").read_text()
    assert fields.docs_table() in doc, "docs/export.md: regenerate with python -m neurontop.core.telemetry.fields"


def test_the_batch_columns_are_the_catalogues_batch_fields() -> None:
    names = [f.name for f in dataclasses.fields(B.Batch)]
    assert set(names) - {"layout", "events", "extra"} == {f.name for f in fields.batch_fields()}


def test_every_row_says_what_it_is() -> None:
    seen = set()
    for f in fields.FIELDS:
        assert f.shape in fields.SHAPES and f.kind in ("gauge", "counter", "derived", "time"), f.name
        assert f.source and f.description, f.name
        assert (f.csv is None) == (f.group is None), f.name
        if f.csv is not None:
            assert f.csv not in seen, f.csv
            seen.add(f.csv)
    assert fields.groups() == ("util", "flops", "engines", "hbm", "links", "vcpu", "health", "training")


TOTAL = Field("context_switches", "row", "", "gauge", "system_data.vcpu_usage.context_switch_count",
              "host context switches", group="vcpu", csv="context_switches", decimals=0,
              path=("system_data", "vcpu_usage", "context_switch_count"))


@pytest.mark.parametrize("via_profile", [False, True])
def test_a_figure_added_to_the_catalogue_reaches_sample_batch_and_csv(tmp_path, via_profile: bool) -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 12)
    log = tmp_path / "run.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    src = log
    out = tmp_path / "out.csv"
    with fields.registered(TOTAL):
        d = Decoder()
        samples = [d.decode(x) for x in lines]
        import json

        want = [float(json.loads(x)["system_data"]["vcpu_usage"]["context_switch_count"]) for x in lines]
        assert min(want) > 0 and [s.extras["context_switches"] for s in samples] == want
        (b,) = B.from_samples(samples)
        assert b.extra["context_switches"].tolist() == want
        if via_profile:  # the column reader finds it by its path in the profile's columnar chunks
            src = tmp_path / "run.ntprof"
            assert cli.main(["import", str(log), "-o", str(src)]) == 0
            (pb,) = list(_batches(src))
            assert np.array_equal(pb.extra["context_switches"], b.extra["context_switches"])
        assert cli.main(["export", str(src), "-o", str(out), "--fields", "vcpu"]) == 0
    rows = list(csv.DictReader(out.open()))
    header = out.read_text().splitlines()[0].split(",")
    assert header[-2:] == ["host_mem_total_bytes", "context_switches"]  # after its group's other columns
    assert [r["context_switches"] for r in rows] == [str(int(w)) for w in want]
    # and gone again with the with-block
    assert "context_switches" not in [c.name for c in columns_for_layout(b.layout, parse_fields("all"))]


def _batches(path):
    from neurontop.core.store.colread import iter_profile

    return iter_profile(Profile(str(path)))


def test_a_figure_the_report_lacks_is_an_empty_cell(tmp_path) -> None:
    gone = dataclasses.replace(TOTAL, name="gone", csv="gone_bytes", path=("system_data", "no_such", "x"))
    with fields.registered(gone):
        d = Decoder()
        s = d.decode(make_reports("trn1.2xlarge", "healthy", 1)[0])
        assert math.isnan(s.extras["gone"])


def test_only_plain_numbers_can_be_added_without_code() -> None:
    with pytest.raises(ValueError, match="plain"):
        with fields.registered(dataclasses.replace(TOTAL, path=None)):
            pass
    with pytest.raises(ValueError, match="exists"):
        with fields.registered(dataclasses.replace(TOTAL, name="util")):
            pass
