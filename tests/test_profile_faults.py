"""Fault injection against profiles: bit flips are a one-line error naming the chunk (or change
nothing), never a silent change or a traceback; --skip-bad skips a bad chunk."""

from __future__ import annotations

import json
import random
import sqlite3

import pytest

from neurontop.core.store.profile import Profile, ProfileError
from neurontop.core.store.recorder import Recorder
from neurontop.core.telemetry.sample import Decoder

from .conftest import make_reports, run_cli


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("flip") / "base.ntprof"
    rec = Recorder(str(path), {"simulator": "{}", "created_unix": "0"}, autoflush=False)  # the same bytes each run
    d = Decoder()
    for k, line in enumerate(make_reports("trn1.2xlarge", "input_bound", 700, period=0.5)):
        rec.append(line, d.decode(line), now=float(k))
    rec.close()
    return path


def _diag(path) -> tuple[int, object]:
    r = run_cli("diagnose", str(path), "--json")
    assert b"Traceback" not in r.stderr, r.stderr[-800:]
    if r.returncode == 2:
        assert r.stderr.count(b"\n") == 1, r.stderr
        return 2, None
    out = json.loads(r.stdout)
    out.pop("source")
    return r.returncode, out


@pytest.mark.slow  # (about 20 s: 12 damaged copies, each exported and diagnosed by the CLI)
def test_bit_flips_are_errors_or_change_nothing(base, tmp_path) -> None:
    ref_csv = run_cli("export", str(base), "-o", "-", "--fields", "all").stdout
    ref_diag = _diag(base)
    ref_lines = [x for _, x in Profile(str(base)).iter_raw()]
    data = base.read_bytes()
    rng = random.Random(2026)
    # Four flips in the middle of chunk data (where most of the bytes are, and which the checksums
    # must catch), eight anywhere in the file (its layout varies with the compactor thread's timing).
    with sqlite3.connect(f"file:{base}?mode=ro", uri=True) as db:
        blobs = [bytes(r[0]) for r in db.execute("SELECT data FROM chunks")]
    inside = []
    for blob in blobs:  # (a blob spans overflow pages: look for a run of it that one page holds)
        for frac in (0.5, 0.4, 0.6, 0.3, 0.7):
            at = data.find(blob[int(len(blob) * frac): int(len(blob) * frac) + 32])
            if at >= 0:
                inside += [at + k for k in (0, 17)]
                break
    assert len(inside) >= 4, "the chunk data is not where the test looks for it"
    errors = 0
    for i in range(12):
        flipped = bytearray(data)
        pos = inside[i] if i < 4 else rng.randrange(len(flipped))
        flipped[pos] ^= 1 << rng.randrange(8)
        path = tmp_path / f"f{i}.ntprof"
        path.write_bytes(bytes(flipped))
        r = run_cli("export", str(path), "-o", "-", "--fields", "all")
        assert b"Traceback" not in r.stderr, r.stderr[-800:]
        if r.returncode == 2:
            errors += 1
            assert r.stderr.count(b"\n") == 1 and b"error" in r.stderr, r.stderr
        else:
            assert r.returncode == 0 and r.stdout == ref_csv, f"byte {pos}: exit 0 with different data"
        rc, out = _diag(path)
        assert rc == 2 or out == ref_diag[1], f"byte {pos}: diagnose changed its verdict silently"
        try:
            lines = [x for _, x in Profile(str(path)).iter_raw()]
        except ProfileError:
            continue
        assert lines == ref_lines
    assert errors >= 4  # every flip inside chunk data is caught


def test_a_bad_chunk_is_named_and_skip_bad_skips_it(base, tmp_path) -> None:
    path = tmp_path / "bad.ntprof"
    path.write_bytes(base.read_bytes())
    with sqlite3.connect(path) as db:
        cid, first, n, data = db.execute("SELECT id, first_seq, n, data FROM chunks ORDER BY first_seq").fetchone()
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0x10
        db.execute("UPDATE chunks SET data = ? WHERE id = ?", (bytes(bad), cid))
    r = run_cli("export", str(path), "-o", "-")
    assert r.returncode == 2 and r.stdout == b""
    err = r.stderr.decode()
    assert f"chunk {cid} (samples {first}-{first + n - 1}, t=" in err and "--skip-bad" in err and err.count("\n") == 1
    r = run_cli("export", str(path), "-o", "-", "--skip-bad")
    assert r.returncode == 0 and f"chunk {cid}" in r.stderr.decode()
    assert r.stdout.decode().count("\n") == 1 + 700 - n
    r = run_cli("diagnose", str(path), "--skip-bad")
    assert r.returncode in (0, 1) and f"chunk {cid}" in r.stderr.decode()


def test_a_frame_that_lost_its_checksum_is_damage(base, tmp_path) -> None:
    import zstandard

    path = tmp_path / "nock.ntprof"
    path.write_bytes(base.read_bytes())
    with sqlite3.connect(path) as db:
        cid, data = db.execute("SELECT id, data FROM chunks").fetchone()
        plain = zstandard.ZstdDecompressor().decompress(data)
        db.execute("UPDATE chunks SET data = ? WHERE id = ?", (zstandard.ZstdCompressor().compress(plain), cid))
    with pytest.raises(ProfileError, match="checksum"):
        list(Profile(str(path)).iter_raw())
