"""The column reader (colread.from_chunk) and the batch hints agree with the report-by-report path;
the block formatter writes what Python's formatting writes."""

from __future__ import annotations

import io
import json
import math
import random
from datetime import datetime, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurontop.core.analysis.hints import HintMonitor
from neurontop.core.analysis.rules import causes
from neurontop.core.export.exporter import Column, columns_for, figures, parse_fields
from neurontop.core.export.writers import csv_exporter
from neurontop.core.store import colcodec
from neurontop.core.store import colread as CR
from neurontop.core.telemetry import batch as B
from neurontop.core.telemetry.fields import ENGINE_NAMES
from neurontop.core.telemetry.sample import Decoder, Sample

from .conftest import REAL_TRN1, ROOT, SAMPLE_JSONL, make_reports, needs_shared, run_cli, strip_extension


# -- the export's cells one at a time: the definitions the block paths are held to ------------------
def row_values(s: Sample, cols: list[Column], hints: set[str]) -> list[float | None]:
    """Values in column order; None where this sample lacks the metric."""
    vals: list[float | None] = []
    cpd = max(1, s.cores_per_device)
    dev_mem = s.device_mem() if s.n_devices else None
    links = dict(zip(s.link_pairs, s.link_rate, strict=False)) if s.link_rate is not None else {}
    for c in cols:
        g = c.group
        i = (c.device or 0) * cpd + (c.core or 0) if c.core is not None else None
        v: float | None = None
        if g == "util":
            v = float(s.util[i]) if i is not None and i < s.n_cores else None
        elif g == "flops":
            v = float(s.flops[i]) / 1e12 if s.flops is not None and i is not None and i < s.n_cores else None
        elif g == "engines":
            if s.engines is not None and i is not None and i < s.n_cores:
                v = float(s.engines[ENGINE_NAMES.index(c.metric[: -len("_active_pct")]), i]) * 100
        elif g == "hbm":
            if c.metric == "hbm_capacity_bytes":
                v = float(s.hbm_capacity) if s.hbm_capacity else None
            elif c.core is None:
                v = float(dev_mem[c.device]) if dev_mem is not None and c.device < len(dev_mem) else None
            elif s.hbm_rate is not None and i is not None and i < s.n_cores:
                v = float(s.hbm_rate[i])
        elif g == "links":
            if c.metric == "efa_bytes_per_s":
                v = s.efa_rate
            else:
                a, b = c.metric[len("link_nd"):-len("_bytes_per_s")].split("_nd")
                r = links.get((int(a), int(b)))
                v = float(r) if r is not None else None
        elif g == "vcpu":
            v = {"system_user_pct": s.sys_user, "system_system_pct": s.sys_system, "system_idle_pct": s.sys_idle,
                 "runtime_user_pct": s.runtime_user, "runtime_system_pct": s.runtime_system,
                 "host_mem_used_bytes": float(s.host_mem_used), "host_mem_total_bytes": float(s.host_mem_total)}[c.metric]
        elif g == "health":
            v = {"ecc_corrected": s.ecc_corrected, "ecc_uncorrected": s.ecc_uncorrected}[c.metric]
        elif g == "training":
            t = s.training
            if t is not None:
                v = {"loss": t.loss, "tokens_per_s": t.tokens_per_s, "mfu_pct": t.mfu * 100,
                     "step_time_p50_s": t.step_time_s.p50 if t.step_time_s.p50 > 0 else None,
                     "input_wait_pct": s.input.wait_frac * 100 if s.input else None}[c.metric]
                v = float(v) if v is not None else None
        elif g == "hints":
            v = 1.0 if c.metric[len("hint_"):] in hints else 0.0
        vals.append(v if v is None or math.isfinite(v) else None)
    return vals


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def assert_same(a: list[B.Batch], b: list[B.Batch]) -> None:
    assert [x.layout for x in a] == [x.layout for x in b] or {x.layout for x in a} == {x.layout for x in b}
    assert sum(map(len, a)) == sum(map(len, b))
    for key, v in b[0].__dict__.items():
        if key in ("layout", "events"):
            continue
        if key == "extra":  # the catalogue's plain figures: the same names and values
            for x, y in zip(a, b, strict=False):
                assert set(x.extra) == set(y.extra)
            for name in v:
                ga, wa = np.concatenate([x.extra[name] for x in a]), np.concatenate([x.extra[name] for x in b])
                assert np.array_equal(ga, wa, equal_nan=True), name
            continue
        got = [getattr(x, key) for x in a]
        want = [getattr(x, key) for x in b]
        if v is None:
            assert all(g is None for g in got), key
            continue
        ga, wa = np.concatenate(got), np.concatenate(want)
        assert ga.shape == wa.shape and np.array_equal(ga, wa, equal_nan=True), key
    ev_a, ev_b, off_a, off_b = {}, {}, 0, 0
    for x in a:
        ev_a.update({off_a + i: e for i, e in x.events.items()})
        off_a += len(x)
    for x in b:
        ev_b.update({off_b + i: e for i, e in x.events.items()})
        off_b += len(x)
    assert ev_a == ev_b


def by_reports(lines: list[bytes]) -> list[B.Batch]:
    d = Decoder()
    return B.from_samples([d.decode(x) for x in lines])


def by_columns(lines: list[bytes], parts: int = 1) -> list[B.Batch]:
    d = Decoder()
    out = []
    step = math.ceil(len(lines) / parts)
    for a in range(0, len(lines), step):
        blob = colcodec.encode(lines[a:a + step])
        assert blob is not None
        out.append(CR.from_chunk(colcodec.decode_lazy(blob), d))
    return out


@pytest.mark.parametrize("preset,scenario,strip", [
    ("trn1.2xlarge", "input_bound", False), ("trn1.32xlarge", "straggler", False),
    # (the largest machine and a second trn1.32xlarge case: 8-16 s each, in the slow set)
    pytest.param("trn2.48xlarge", "comm_bound", False, marks=pytest.mark.slow),
    pytest.param("trn1.32xlarge", "hbm_pressure", False, marks=pytest.mark.slow),
    ("trn1.2xlarge", "healthy", True), ("trn1.32xlarge", "idle_cores", True)])
def test_columns_read_like_reports(preset: str, scenario: str, strip: bool) -> None:
    lines = make_reports(preset, scenario, 90, period=0.5)
    if strip:  # plain neuron-monitor (compact, as it writes): utilisation and time from its own fields
        lines = [json.dumps(json.loads(x), separators=(",", ":")).encode() for x in strip_extension(lines)]
    assert_same(by_columns(lines, parts=3), by_reports(lines))  # counters carry over chunk boundaries


@needs_shared
@pytest.mark.parametrize("path", [SAMPLE_JSONL, REAL_TRN1], ids=["sample", "real-trn1"])
def test_real_neuron_monitor_logs_read_like_reports(path) -> None:
    lines = [ln for ln in path.read_bytes().split(b"\n") if ln.strip()]
    assert_same(by_columns(lines), by_reports(lines))


def test_shipped_profiles_read_as_columns_like_reports() -> None:
    from neurontop.core.store.profile import Profile

    for path in sorted((ROOT / "profiles").glob("*.ntprof")):
        prof = Profile(str(path))
        kinds = [isinstance(c, colcodec.ColumnChunk) for _, c in prof.iter_chunks()]
        assert all(kinds), path  # the fast path is what these exercise
        assert_same(list(CR.iter_profile(prof)), B.from_samples(list(prof.iter_samples())))


class _FakeProfile:
    path = "fake.ntprof"

    def __init__(self, chunks) -> None:
        self.chunks = chunks

    def iter_chunks(self, lazy: bool = True, on_bad=None):
        first = 0
        for c in self.chunks:
            yield first, c
            first += c.n if isinstance(c, colcodec.LazyChunk) else len(c)


def test_a_shape_the_reader_does_not_cover_falls_back_report_by_report() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 30)
    # the same template with the two cores' keys swapped in half the rows: keys are text cells that
    # change within the shape, so the column paths of the first row do not hold for the others
    swapped = []
    for k, line in enumerate(lines):
        d = json.loads(line)
        if k % 2:
            nc = d["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"]
            d["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["neuroncores_in_use"] = dict(
                reversed(list(nc.items())))
        swapped.append(json.dumps(d, separators=(",", ":")).encode())
    chunk = colcodec.decode_lazy(colcodec.encode(swapped[10:]))
    dec = Decoder()
    for x in swapped[:10]:
        dec.decode(x)
    before = (dec._prev, dec._count)
    with pytest.raises(CR.Unsupported):
        CR.from_chunk(chunk, dec)
    assert (dec._prev, dec._count) == before  # untouched: the fallback continues from here
    head = colcodec.decode_lazy(colcodec.encode(swapped[:10]))
    got = list(CR.iter_profile(_FakeProfile([head, chunk]), rows=7))
    assert_same(got, by_reports(swapped))


def test_json_lines_chunks_between_columnar_ones() -> None:
    lines = make_reports("trn1.32xlarge", "comm_bound", 60, period=0.5)
    chunks = [colcodec.decode_lazy(colcodec.encode(lines[:20])), lines[20:35],
              colcodec.decode_lazy(colcodec.encode(lines[35:]))]
    assert_same(list(CR.iter_profile(_FakeProfile(chunks))), by_reports(lines))


def test_columns_decoded_ahead_are_used_and_change_nothing(monkeypatch) -> None:
    """The worker thread decodes the chunks after the first of a shape; the reader uses what it
    decoded, and the batches are the ones it makes decoding every chunk itself, or report by report."""
    import threading

    lines = make_reports("trn1.2xlarge", "straggler", 60, period=0.5)

    def chunks():
        return [colcodec.decode_lazy(colcodec.encode(lines[a:a + 10])) for a in range(0, 60, 10)]

    ready, by_reader = [], []
    group_raw, columns = CR._group_raw, colcodec.LazyGroup.columns
    monkeypatch.setattr(CR, "_group_raw", lambda lg: (ready.append(lg.ahead is not None), group_raw(lg))[1])

    def counted(lg, cols):
        by_reader.append(threading.current_thread() is threading.main_thread())
        return columns(lg, cols)

    monkeypatch.setattr(colcodec.LazyGroup, "columns", counted)
    monkeypatch.setattr(CR, "_SHAPES", {})  # (shapes another test read would be known from the start)
    ahead = list(CR.iter_profile(_FakeProfile(chunks())))
    # the first chunk (the shapes unknown yet) is decoded by the reader
    first = len(chunks()[0].groups)
    assert ready == [False] * first + [True] * (len(ready) - first) and len(ready) > first
    reader_ahead = sum(by_reader)
    ready.clear()
    by_reader.clear()
    monkeypatch.setattr(CR, "_prefetch", lambda chunk: None)
    monkeypatch.setattr(CR, "_SHAPES", {})
    itself = list(CR.iter_profile(_FakeProfile(chunks())))
    assert not any(ready)
    assert sum(by_reader) == reader_ahead + (len(ready) - first)  # the decoded-ahead groups: none by the reader
    assert_same(ahead, itself)
    assert_same(ahead, by_reports(lines))


def test_a_chunk_the_worker_cannot_decode_is_reported_by_the_reader(monkeypatch) -> None:
    from neurontop.core.store.profile import ProfileError

    lines = make_reports("trn1.2xlarge", "healthy", 40)
    chunks = [colcodec.decode_lazy(colcodec.encode(lines[a:a + 10])) for a in range(0, 40, 10)]
    bad = chunks[3].groups[0]
    bad.body = bad.body[:10]  # its columns' bytes cut short: numpy cannot read them
    with pytest.raises(ProfileError, match="the chunk from sample 30 is corrupt"):
        list(CR.iter_profile(_FakeProfile(chunks)))


@pytest.mark.parametrize("scenario", ["straggler", "input_bound", "comm_bound", "hbm_pressure", "idle_cores"])
def test_batch_hints_equal_the_live_monitor(scenario: str) -> None:
    lines = make_reports("trn1.32xlarge", scenario, 80, period=0.5)
    restarted = make_reports("trn1.32xlarge", "healthy", 30, period=0.5)  # time starts again: a new stream
    d = Decoder()
    samples = [d.decode(x) for x in lines]
    d = Decoder()
    samples += [d.decode(x) for x in restarted]
    # then other hardware in the same stream (time goes on): windows that span two layouts
    later = []
    for x in make_reports("trn1.2xlarge", "input_bound", 30, period=0.5):
        doc = json.loads(x)
        doc["neuron_top"]["time_s"] += samples[-1].time_s + 0.5
        later.append(json.dumps(doc).encode())
    samples += [d.decode(x) for x in later]
    live = HintMonitor()
    want = []
    for s in samples:
        live.feed_sample(s)
        shown = {h.cause for h in live.shown}
        want.append([c in shown for c in causes()])
    want_a = np.array(want)
    assert want_a[:80].any()  # the scenario's hint shows, so the comparison means something
    assert want_a[-30:].any()  # and after the hardware changed
    rng = random.Random(scenario)
    parts = list(B.from_samples(samples))  # one batch per layout
    assert len(parts) == 2
    starts = np.cumsum([0, *map(len, parts)])
    for _ in range(3):  # whatever the batch boundaries
        cuts = sorted({*rng.sample(range(1, len(samples)), 6), *starts[1:-1].tolist()})
        mon = HintMonitor()
        got = []
        for a, b in zip([0, *cuts], [*cuts, len(samples)], strict=True):
            k = int(np.searchsorted(starts, a, side="right")) - 1
            got.append(mon.feed(parts[k].rows(a - starts[k], b - starts[k]), causes()))
        assert np.array_equal(np.concatenate(got), want_a)


@pytest.mark.parametrize("preset", ["trn1.2xlarge", "trn2.48xlarge"])
def test_batch_figures_equal_the_per_cell_definition(preset: str) -> None:
    lines = make_reports(preset, "comm_bound", 6)
    d = Decoder()
    samples = [d.decode(x) for x in lines]
    groups = parse_fields("all")
    cols = columns_for(samples[0], groups)
    (b,) = B.from_samples(samples)
    hints = np.zeros((len(b), len(causes())), dtype=bool)
    hints[:, causes().index("communication")] = True
    names, m = figures(b, groups, hints)
    assert names == [c.name for c in cols]
    for k, s in enumerate(samples):
        for v, want in zip(m[k], row_values(s, cols, {"communication"}), strict=True):
            if want is None:
                assert math.isnan(v)
            else:
                assert v == pytest.approx(want, rel=1e-12)


def test_a_later_layout_fills_the_fixed_columns_by_name() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 4)
    mixed = lines[:2] + strip_extension(lines[2:])
    out = io.StringIO()
    ex = csv_exporter(out, ("util", "engines"))
    d = Decoder()
    for b in B.from_samples([d.decode(x) for x in mixed]):
        ex.add_batch(b)
    ex.finish()
    rows = out.getvalue().splitlines()
    assert len({r.count(",") for r in rows}) == 1 and rows[3].endswith(",")


_tricky = st.one_of(st.floats(-1e12, 1e12, allow_nan=False), st.sampled_from([0.125, 2.5, 1.005, 0.285, -0.001, 1e-9]),
                    st.integers(-10**6, 10**6).map(lambda k: k / 8), st.just(float("nan")), st.just(float("inf")))


def _tie(v: float, d: int) -> bool:
    """Within a few ULPs of a tie at d decimals: the libraries and Python may round either way."""
    s = abs(v) * 10**d
    return abs(s - math.floor(s) - 0.5) < 1e-9 * max(1.0, s)


@settings(max_examples=200, deadline=None)
@given(st.lists(_tricky, min_size=1, max_size=20), st.integers(0, 5))
def test_csv_cells_are_the_value_at_its_columns_precision(vals: list[float], d: int) -> None:
    """A CSV cell is the figure at its column's precision, as f"{v:.{d}f}" writes it (outside exact
    ties), never "-0.00", and empty for a missing or infinite value."""
    col = Column("x", "util", d)
    out = io.StringIO()
    sink = csv_exporter(out, ("util",)).sink
    from neurontop.core.export.exporter import _rounded, _wide

    m = np.array(vals)[:, None]
    m[np.isinf(m)] = np.nan  # (figures() makes an infinite rate no figure)
    head = {"time_s": np.zeros(len(vals)), "step": np.zeros(len(vals), int)}
    sink(_wide(head, _rounded(m, [d]), [col]), [col])
    got = [line.split(",")[2] for line in out.getvalue().splitlines()[1:]]
    for v, cell in zip(vals, got, strict=True):
        if not math.isfinite(v):
            assert cell == ""
        elif not _tie(v, d):
            want = f"{v:.{d}f}"
            assert cell == (want[1:] if want.startswith("-") and float(want) == 0 else want), (v, d)


@pytest.mark.slow  # (about 20 s: exports of every group of a long profile and its log through the CLI)
def test_cli_export_of_a_profile_equals_export_of_the_same_log(tmp_path, monkeypatch) -> None:
    """The column path (profile) and the report path (log) write the same bytes."""
    from neurontop.core.store.recorder import Recorder

    monkeypatch.setattr("neurontop.core.store.recorder.COMPACT_ROWS", 40)
    monkeypatch.setattr("neurontop.core.store.recorder.CHUNK_RAW_BYTES", 64 * 1024)
    lines = make_reports("trn1.32xlarge", "straggler", 130, period=0.5)
    log = tmp_path / "r.jsonl"
    log.write_bytes(b"\n".join(lines) + b"\n")
    prof = tmp_path / "r.ntprof"
    rec = Recorder(str(prof))
    d = Decoder()
    for k, x in enumerate(lines):
        rec.append(x, d.decode(x), now=1e6 + k)  # a commit per report: chunks seal at 64 KiB
    rec.close()
    from neurontop.core.store.profile import Profile

    assert sum(isinstance(c, colcodec.ColumnChunk) for _, c in Profile(str(prof)).iter_chunks()) >= 3
    for extra in ([], ["--layout", "long"], ["--every", "3s"], ["--from", "7s", "--to", "40s"]):
        a = run_cli("export", str(prof), "-o", "-", "--fields", "all", *extra)
        b = run_cli("export", str(log), "-o", "-", "--fields", "all", *extra)
        assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
        # a log has no start time: compare everything but the timestamp column
        drop = (lambda t: t) if extra[:2] == ["--layout", "long"] else \
            (lambda t: b"\n".join(b",".join(r.split(b",")[:1] + r.split(b",")[2:]) for r in t.split(b"\n")))
        assert drop(a.stdout) == drop(b.stdout) and a.stdout.count(b"\n") > 10, extra


def test_export_reader_reports_a_damaged_chunk_in_one_line(tmp_path) -> None:
    import sqlite3

    import zstandard

    from neurontop.core.export.reading import open_input
    from neurontop.core.store.profile import ProfileError
    from neurontop.core.store.recorder import Recorder

    lines = make_reports("trn1.2xlarge", "healthy", 40)
    path = tmp_path / "d.ntprof"
    rec = Recorder(str(path))
    d = Decoder()
    for k, x in enumerate(lines):
        rec.append(x, d.decode(x), now=float(k))
    rec.close()
    whole = list(open_input(str(path)).batches or [])
    assert_same(whole, by_reports(lines))
    with sqlite3.connect(path) as db:
        data = bytearray(zstandard.ZstdDecompressor().decompress(db.execute("SELECT data FROM chunks").fetchone()[0]))
        for i in range(len(data) - 400, len(data), 7):  # damage the body, keep its length
            data[i] ^= 0xFF
        db.execute("UPDATE chunks SET data = ?", (zstandard.ZstdCompressor().compress(bytes(data)),))
    try:
        got = list(open_input(str(path)).batches or [])
    except ProfileError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:  # flipped residuals may still decode (to other numbers): then nothing may be lost
        assert sum(map(len, got)) == len(lines)
    r = run_cli("export", str(path), "-o", str(tmp_path / "x.csv"))
    assert b"Traceback" not in r.stderr and r.returncode in (0, 2)


def test_a_shape_whose_number_kinds_change_between_chunks() -> None:
    """The shape cache is keyed by text only: a column that is integer in one chunk and decimal in
    the next (period 1 vs 1.0, an input wait of 0 vs 0.25) must still be read per chunk."""
    lines = make_reports("trn1.2xlarge", "input_bound", 40)
    ints = [x.replace(b'"period_s":1.0', b'"period_s":1') for x in lines[:20]]
    assert ints[0] != lines[0]
    mixed = ints + lines[20:]
    assert_same(by_columns(mixed, parts=2), by_reports(mixed))
    assert_same(by_columns(list(reversed(mixed[:20])) + mixed[20:], parts=2),
                by_reports(list(reversed(mixed[:20])) + mixed[20:]))


def test_plain_reports_without_periods_advance_a_second_each() -> None:
    """neuron-monitor sections without a `period`: the decoder counts one second per report."""
    out = []
    for x in strip_extension(make_reports("trn1.2xlarge", "healthy", 12)):
        d = json.loads(x)
        for rt in d.get("neuron_runtime_data", []):
            for sec in rt.get("report", {}).values():
                if isinstance(sec, dict):
                    sec.pop("period", None)
        d.get("system_data", {}).get("vcpu_usage", {}).pop("period", None)
        out.append(json.dumps(d, separators=(",", ":")).encode())
    want = by_reports(out)
    assert np.array_equal(np.concatenate([b.time_s for b in want]), np.arange(1.0, 13.0))
    assert_same(by_columns(out, parts=2), want)


def test_later_chunks_of_a_shape_replay_its_column_requests(monkeypatch) -> None:
    """From the third chunk of a shape (and kinds) on, the reader replays the requests the second
    recorded instead of looking paths up; what it reads must not change. Chunks alternate between
    two kinds lists (period 1 vs 1.0), so each has its own script."""
    lines = make_reports("trn1.2xlarge", "input_bound", 120)
    mixed = [x.replace(b'"period_s":1.0', b'"period_s":1') if (k // 20) % 2 == 0 else x for k, x in enumerate(lines)]
    replayed = []
    init = CR._Cols.__init__

    def spy(self, *a, **kw) -> None:
        init(self, *a, **kw)
        replayed.append(self.script is not None)

    monkeypatch.setattr(CR._Cols, "__init__", spy)
    CR._SHAPES.clear()
    assert_same(by_columns(mixed, parts=6), by_reports(mixed))
    assert sum(replayed) >= 2, replayed


def test_concat_of_a_batchs_pieces_is_the_batch() -> None:
    b = by_reports(make_reports("trn1.2xlarge", "healthy", 30))[0]
    b.events = {3: ({"type": "scenario"},), 25: ({"type": "x"},)}
    whole = B.concat([b.rows(0, 10), b.rows(10, 11), b.rows(11, 30)])
    assert_same([whole], [b])
    assert whole.events == b.events
