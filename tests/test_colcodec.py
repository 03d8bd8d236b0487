"""The columnar chunk codec and the vectorised number formatting behind it."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from neurontop.core.store import colcodec, numtext
from neurontop.core.store.profile import Profile, ProfileError
from neurontop.core.store.recorder import Recorder
from neurontop.core.telemetry.sample import Decoder

from .conftest import REAL_TRN1, SAMPLE_JSONL, make_reports, needs_shared


def roundtrip(lines: list[bytes]) -> bytes | None:
    blob = colcodec.encode(lines)
    if blob is not None:
        # checked here independently of the encoder's own check
        assert colcodec.decode(blob).lines() == lines
        for i in (0, len(lines) // 2, len(lines) - 1):
            assert colcodec.decode(blob).line(i) == lines[i]
    return blob


@pytest.mark.parametrize("preset,scenario", [("trn1.2xlarge", "input_bound"), ("trn1.32xlarge", "healthy"),
                                             ("trn2.48xlarge", "straggler"), ("trn1.32xlarge", "hbm_pressure")])
def test_simulator_reports_round_trip_byte_for_byte_and_shrink(preset: str, scenario: str) -> None:
    lines = make_reports(preset, scenario, 120, numerics=preset == "trn1.2xlarge")
    blob = roundtrip(lines)
    assert blob is not None
    z = zstandard.ZstdCompressor(level=9)
    columnar, plain = len(z.compress(blob)), len(z.compress(b"\n".join(lines)))
    assert columnar < plain / 2.5, (columnar, plain)


def test_text_that_never_changes_in_a_chunk_is_kept_once() -> None:
    """Digits inside strings (tags, UUIDs, core keys) that stay the same become literal text: the
    chunk holds no text column of them, one per report, and still returns the reports exactly."""
    lines = make_reports("trn1.32xlarge", "healthy", 40)
    lines[7] = lines[7].replace(b'"neuron_runtime_tag":"', b'"neuron_runtime_tag":"99', 1)  # one changing tag
    blob = roundtrip(lines)
    assert blob is not None
    lazy = colcodec.decode_lazy(blob)
    texts = [v.split(b"\x00") for lg in lazy.groups for v in lg.g.xtext.values()]
    assert texts and all(len(set(cells)) > 1 for cells in texts)  # only text that changes is stored per report
    assert any(b'"uuid":"0000' in lit for lg in lazy.groups for lit in lg.g.lits)


def test_reports_of_two_shapes_in_one_chunk() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 40) + make_reports("trn1.32xlarge", "healthy", 40)
    blob = roundtrip(lines)
    assert blob is not None
    assert len(colcodec.decode(blob).groups) == 2


@needs_shared
def test_neuron_monitor_logs_round_trip() -> None:
    for path in (SAMPLE_JSONL, REAL_TRN1):
        lines = [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]
        # full-precision floats, integers written without a point, digits inside strings ("nc_v3.10",
        # "ami-0c..."): what a real neuron-monitor writes
        assert roundtrip(lines) is not None, path


_scalar = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=6), st.booleans(), st.none(),
                    st.sampled_from(["007", "-0", "nc_v3.10", "1e5", "ami-0ceecbb", "-"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "0", "12", "x.y"]),
                                st.one_of(_scalar, st.lists(_scalar, max_size=4)), max_size=5),
                min_size=1, max_size=12))
def test_any_json_lines_come_back_exactly_or_are_refused(docs: list[dict]) -> None:
    lines = [json.dumps(d, separators=(",", ":")).encode() for d in docs]
    roundtrip(lines)  # None is allowed (the caller keeps JSON lines); a wrong line is not


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-(10**12), 10**12), st.integers(0, 10**6), st.integers(0, 10**15)),
                min_size=2, max_size=40))
def test_numeric_documents_always_encode(rows: list[tuple[int, int, int]]) -> None:
    """Documents that differ only in their numbers are columnar material: the codec must take them."""
    lines = [json.dumps({"i": a, "f": b / 100 + 0.5, "c": [c, c // 2]}, separators=(",", ":")).encode()
             for a, b, c in rows]
    assert roundtrip(lines) is not None


@given(st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=1, max_size=30))
def test_ints_format_like_python(vals: list[int]) -> None:
    text = numtext.join([numtext.ints(np.array(vals, dtype=np.int64)), numtext.literal(b"\n", len(vals))])
    assert text.decode().split("\n")[:-1] == [str(v) for v in vals]


@given(st.lists(st.integers(-(10**15), 10**15), min_size=1, max_size=30), st.integers(0, 6))
def test_table_formats_decimals_like_python(vals: list[int], d: int) -> None:
    a = np.array(vals, dtype=np.int64)
    if d:
        text = numtext.join([numtext.table(a[:, None], d)[0], numtext.literal(b"\n", len(vals))]).decode().split("\n")[:-1]
        assert text == [f"{'-' if v < 0 else ''}{abs(v) // 10**d}.{abs(v) % 10**d:0{d}d}" for v in vals]
    dec = max(d, 1)
    block = numtext.table(a[:, None], dec, shortest=True)[0]
    got = numtext.join([block, numtext.literal(b"\n", len(vals))]).decode().split("\n")[:-1]
    assert [float(x) for x in got] == [v / 10**dec for v in vals]
    assert all(not x.endswith("0") or x.endswith(".0") for x in got)  # shortest: no trailing zeros


def _record(path, lines) -> Recorder:
    rec = Recorder(str(path))
    d = Decoder()
    for k, line in enumerate(lines):
        rec.append(line, d.decode(line), now=float(k))
    return rec


def test_recorder_compacts_in_the_background_while_recording(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("neurontop.core.store.recorder.CHUNK_RAW_BYTES", 64 * 1024)
    monkeypatch.setattr("neurontop.core.store.recorder.COMPACT_ROWS", 50)
    lines = make_reports("trn1.2xlarge", "healthy", 160)
    path = tmp_path / "r.ntprof"
    rec = _record(path, lines)
    rec.flush()
    assert rec._compactor is not None
    rec._compactor.join()
    # still recording: a reader sees every sample, some already in a columnar chunk
    prof = Profile(str(path))
    assert [x for _, x in prof.iter_raw()] == lines
    kinds = [colcodec.is_columnar(zstandard.ZstdDecompressor().decompress(r[0]))
             for r in prof.db.execute("SELECT data FROM chunks ORDER BY first_seq")]
    assert kinds[0]  # the first samples were rewritten while recording went on
    prof.close()
    rec.close()
    prof = Profile(str(path))
    assert [x for _, x in prof.iter_raw()] == lines
    assert prof.raw(123) == lines[123] and prof.sample(77).time_s == Decoder().decode(lines[77]).time_s
    chunks = prof.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert chunks <= 4


def test_version_1_profiles_still_read(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(colcodec, "encode", lambda lines: None)  # what version 1 wrote: JSON lines only
    lines = make_reports("trn1.2xlarge", "healthy", 30)
    path = tmp_path / "v1.ntprof"
    _record(path, lines).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='1' WHERE key='format_version'")
    prof = Profile(str(path))
    assert prof.version == 1 and [x for _, x in prof.iter_raw()] == lines


def test_a_corrupt_columnar_chunk_is_a_clear_error(tmp_path) -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 30)
    path = tmp_path / "c.ntprof"
    _record(path, lines).close()
    with sqlite3.connect(path) as db:
        data = zstandard.ZstdDecompressor().decompress(db.execute("SELECT data FROM chunks").fetchone()[0])
        assert colcodec.is_columnar(data)
        bad = zstandard.ZstdCompressor().compress(data[: len(data) - 100])
        db.execute("UPDATE chunks SET data = ?", (bad,))
    prof = Profile(str(path))
    with pytest.raises(ProfileError, match="chunk .* is corrupt"):
        list(prof.iter_raw())
