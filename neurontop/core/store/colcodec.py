"""Columnar codec for a chunk of report lines (profile format 2; docs/profile-format.md).

Consecutive neuron-monitor reports share their shape: the same keys in the same order, only the
numbers move. A chunk is split into that shape (a template of literal text) and a matrix of numbers,
one column per number in the template. Each column is then predicted from what the decoder already
has: its own previous values (counters and slow gauges), or a related column of the same core or
vCPU (a per-window figure is the difference of a cumulative counter; HBM writes follow reads), and
only the residuals are stored, packed to the bytes they need. zstd compresses that several times
better than the JSON text (the numbers' noise is what is left; docs/profile-format.md has figures).

The encoder checks its own output: a chunk whose decoded text is not byte-identical to the input
is not encoded (the caller keeps the plain JSON-lines chunk), so a profile always returns the
reports exactly as they arrived.

(About 770 lines: one format, its encoder and its decoder; every prediction rule is written twice,
once each way, and they are kept side by side so that a change to one is seen with the other.)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from . import numtext

MAGIC = b"NTC1"
_json_decode = msgspec.json.Decoder().decode
_MAX_DEC = 17  # decimals a float may need (a shortest repr of a double has at most 17 digits)
_LIMIT = 2**62  # scaled values must stay far from int64 overflow
_RENDER_ROWS = 150  # lines rendered to text at a time


def number_paths(doc) -> list[tuple]:
    """The path (keys and list indices) of every number in a JSON document, in text order: the
    order of a shape's number tokens. The encoder finds related columns by them, the column reader
    (colread) the fields."""
    out: list[tuple] = []

    def walk(o, path: tuple) -> None:
        t = type(o)
        if t is dict:
            for k, v in o.items():
                walk(v, (*path, k))
        elif t is list:
            for i, v in enumerate(o):
                walk(v, (*path, i))
        elif t is int or t is float:
            out.append(path)

    walk(doc, ())
    return out


def _index_key(path: tuple) -> int:
    """A number's index key: the nearest list index or digit key above it (the core or vCPU it
    belongs to), -1 for none."""
    for p in reversed(path):
        if type(p) is int:
            return p
        if p.isdigit() and len(p) < 9:
            return int(p)
    return -1


# -- predictors --------------------------------------------------------------------------------
# Base modes use only the column itself; ref modes use one base column of the same index key.
RAW, DELTA, DELTA2, REF, REF_D, DREF_D, SUM = range(7)
_SUM_SPAN = 6  # siblings of a SUM column: nearby columns of the same key and kind (one JSON object)


def _shift(a: np.ndarray) -> np.ndarray:
    out = np.empty_like(a)
    out[0] = 0
    out[1:] = a[:-1]
    return out


def _d(a: np.ndarray) -> np.ndarray:
    return a - _shift(a)  # int64 wraps, and cumsum undoes it exactly


def _cost(e: np.ndarray) -> np.ndarray:
    return np.log2(1.0 + np.abs(e.astype(np.float64))).sum(axis=0)


def _predict(k: float, y: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(k * y.astype(np.float64), -_LIMIT, _LIMIT)).astype(np.int64)


def _fit(t: np.ndarray, y: np.ndarray) -> float:
    ok = y != 0
    if ok.sum() < 2:
        return 0.0
    return float(np.median(t[ok].astype(np.float64) / y[ok].astype(np.float64)))


def _residuals(x: np.ndarray, spec: list[list]) -> np.ndarray:
    d1 = _d(x)
    res = np.empty_like(x)
    for j, (m_, r, k) in enumerate(spec):
        if m_ == RAW:
            res[:, j] = x[:, j]
        elif m_ == DELTA:
            res[:, j] = d1[:, j]
        elif m_ == DELTA2:
            res[:, j] = _d(d1[:, j])
        elif m_ == REF:
            res[:, j] = x[:, j] - _predict(k, x[:, r])
        elif m_ == REF_D:
            res[:, j] = x[:, j] - _predict(k, d1[:, r])
        elif m_ == SUM:
            res[:, j] = x[:, j] - (np.int64(k) - x[:, r].sum(axis=1))
        else:
            res[:, j] = d1[:, j] - _predict(k, d1[:, r])
    return res


# The references found for a shape, reused by the next chunks of that shape (finding them is most of
# the encoder's time; the residuals stay exact whatever the references are, only their size varies).
_SPEC_CACHE: dict[tuple[bytes, tuple[str, ...]], list[list]] = {}


def _choose(x: np.ndarray, keys: list[int], kinds: list[str], shape: bytes | None = None
            ) -> tuple[list[list], np.ndarray]:
    """Per column: [mode, ref, k]; and the residual matrix."""
    n, m = x.shape
    cached = _SPEC_CACHE.get((shape, tuple(kinds))) if shape is not None else None
    if cached is not None and n >= 16:
        return cached, _residuals(x, cached)
    d1 = _d(x)
    d2 = _d(d1)
    base = np.stack([_cost(x), _cost(d1), _cost(d2)])
    mode = base.argmin(axis=0)
    cost = base.min(axis=0)
    spec: list[list] = [[int(mode[j]), -1, 0.0] for j in range(m)]
    by_key: dict[int, list[int]] = {}
    for j, k in enumerate(keys):
        if k >= 0 and kinds[j] != "x":
            by_key.setdefault(k, []).append(j)
    is_ref = np.zeros(m, dtype=bool)
    is_target = np.zeros(m, dtype=bool)
    for j in np.argsort(-cost):
        if cost[j] < 2.0 * n:  # already under ~2 bits a value: a reference cannot pay for itself
            break
        cands = [r for r in by_key.get(keys[j], ()) if r != j and not is_ref[r]]
        if not cands or is_target[j] or kinds[j] == "x":
            continue
        best: tuple[float, Any] = (float(cost[j] * 0.9), None)
        for r in cands:
            for m_, t, y in ((REF, x[:, j], x[:, r]), (REF_D, x[:, j], d1[:, r]), (DREF_D, d1[:, j], d1[:, r])):
                fk = _fit(t, y)
                if fk == 0.0:
                    continue
                c = float(_cost(t - _predict(fk, y)))
                if c < best[0]:
                    best = (c, (m_, r, fk))
        # SUM: the column completes its siblings to a constant (idle = 100 - user - system - ...)
        sib = [r for r in cands if abs(r - j) <= _SUM_SPAN and kinds[r] == kinds[j]]
        if len(sib) >= 2:
            tot = x[:, sib].sum(axis=1)
            c0 = int(np.median(x[:, j] + tot))
            c = float(_cost(x[:, j] - (c0 - tot)))
            if c < best[0]:
                best = (c, (SUM, sib, c0))
        if best[1] is not None:
            m_, r, k = best[1]
            spec[j] = [m_, [int(q) for q in r] if m_ == SUM else int(r), k]
            is_ref[j] = True
            is_target[r] = True
    if shape is not None and n >= 16:
        if len(_SPEC_CACHE) > 64:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[(shape, tuple(kinds))] = spec
    return spec, _residuals(x, spec)  # one mapping from modes to residuals, the inverse of _unpredict


@dataclass(frozen=True)
class _Inverse:
    """What _unpredict needs of a spec, worked out once per spec (see derived)."""

    raw: np.ndarray  # RAW columns, as places in `kept`
    delta2: np.ndarray
    # (mode, the columns' places in `kept`, the columns, their references, k [cols, 1])
    refs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    sums: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]  # (places in `kept`, columns, siblings [cols, s], totals [cols, 1])
    kept: np.ndarray  # the columns whose residuals are needed after the running sum (raw and predicted)


def _inverse(spec: list[list]) -> _Inverse:
    modes = np.array([m_ for m_, _r, _k in spec], dtype=np.int64)
    refs = []
    for m_ in (REF, REF_D, DREF_D):
        cols = np.flatnonzero(modes == m_)
        if len(cols):
            refs.append((m_, cols, np.array([spec[j][1] for j in cols], dtype=np.int64),
                         np.array([spec[j][2] for j in cols], dtype=np.float64)[:, None]))
    by_len: dict[int, list[int]] = {}
    for j in np.flatnonzero(modes == SUM).tolist():
        by_len.setdefault(len(spec[j][1]), []).append(j)
    sums = [(np.array(cols, dtype=np.int64), np.array([spec[j][1] for j in cols], dtype=np.int64),
             np.array([spec[j][2] for j in cols], dtype=np.int64)[:, None]) for cols in by_len.values()]
    raw = np.flatnonzero(modes == RAW)
    kept = np.array(sorted({*raw.tolist(), *(j for _m, c, _r, _k in refs for j in c.tolist()),
                            *(j for c, _s, _t in sums for j in c.tolist())}), dtype=np.int64)  # (np.unique imports numpy.ma)
    # each column list as places in `kept` (the residuals saved before the running sum overwrites them)
    at = {int(j): i for i, j in enumerate(kept)}
    place = lambda cols: np.array([at[int(j)] for j in cols], dtype=np.int64)  # noqa: E731
    return _Inverse(place(raw), np.flatnonzero(modes == DELTA2), [(m_, place(c), c, r, k) for m_, c, r, k in refs],
                    [(place(c), c, sb, t) for c, sb, t in sums], kept)


def _unpredict(res: np.ndarray, spec: list[list]) -> np.ndarray:
    """The inverse of _residuals, in place: `res` (the transposed matrix, each column contiguous, as
    LazyGroup._residuals lays it out) becomes the values; returns a [rows, columns] view of it."""
    inv = derived(spec, "inverse", _inverse)
    x = res.T
    # Most columns are deltas: a running sum of every column at once, in place (a fresh matrix of
    # megabytes per chunk is mostly page faults), then the few others redone from their residuals
    # saved before it (predicted columns are overwritten below: their running sums cost less than
    # picking columns).
    r = x[inv.kept]
    np.cumsum(x, axis=1, out=x)
    if len(inv.raw):
        x[inv.kept[inv.raw]] = r[inv.raw]
    if len(inv.delta2):
        x[inv.delta2] = np.cumsum(x[inv.delta2], axis=1)
    # References are always base columns (_choose never refers to a predicted column), so each
    # predicted mode is one array operation over all its columns.
    for m_, at, cols, ref, k in inv.refs:
        refs = x[ref]
        if m_ != REF:
            refs[:, 1:] = np.diff(refs, axis=1)  # (a copy: x itself is unchanged)
        v = r[at] + np.rint(np.clip(k * refs.astype(np.float64), -_LIMIT, _LIMIT)).astype(np.int64)
        x[cols] = np.cumsum(v, axis=1) if m_ == DREF_D else v
    for at, cols, sib, total in inv.sums:
        x[cols] = r[at] + (total - x[sib].sum(axis=1))
    return res


# -- packing -------------------------------------------------------------------------------------
def _pack(res: np.ndarray) -> tuple[list[int], bytes]:
    z = ((res << 1) ^ (res >> 63)).view(np.uint64)  # zigzag: small magnitudes -> small numbers
    top = z.max(axis=0) if len(z) else np.zeros(res.shape[1], dtype=np.uint64)
    widths = np.select([top == 0, top < 2**8, top < 2**16, top < 2**32], [0, 1, 2, 4], 8)
    parts = []
    for w in (1, 2, 4, 8):
        cols = np.flatnonzero(widths == w)
        if len(cols):
            a = z[:, cols].astype(f"<u{w}").T.copy()  # [cols, rows]
            parts.append(a.view(np.uint8).reshape(len(cols), len(z), w).transpose(0, 2, 1).tobytes())
    return widths.tolist(), b"".join(parts)


# -- text ------------------------------------------------------------------------------------------
def _cells(x: np.ndarray, kinds: list[str], xtext: Mapping[int, list[bytes]], flags: dict[int, np.ndarray],
           cols: list[int]) -> dict[int, np.ndarray]:
    """The cells of columns `cols` as uint8 blocks [rows, width]."""
    out: dict[int, np.ndarray] = {}
    groups: dict[str, list[int]] = {}
    for j in cols:
        groups.setdefault(kinds[j], []).append(j)
    for kind, js in groups.items():
        if kind == "x":
            for j in js:
                out[j] = numtext.strings(xtext[j])
            continue
        dec = None if kind == "i" else int(kind[1:])
        for j, c in zip(js, numtext.table(x[:, js], dec, shortest=True), strict=True):
            out[j] = c
        if kind[0] == "m":
            assert dec is not None
            for j in js:
                as_int = numtext.ints(x[:, j] // 10**dec)
                w = max(as_int.shape[1], out[j].shape[1])
                a = np.zeros((len(x), w), dtype=np.uint8)
                b = np.zeros((len(x), w), dtype=np.uint8)
                a[:, :as_int.shape[1]] = as_int
                b[:, :out[j].shape[1]] = out[j]
                out[j] = np.where(flags[j][:, None], a, b)
    return out


def _line(g: _Group, x: np.ndarray, xtext: _Texts, flags: dict[int, np.ndarray], i: int) -> bytes:
    """Row `i` as text, cell by cell in Python: for one line (a seek, a shape's first report) this is
    cheaper than setting up the column blocks. Same text as the block path (tests compare them)."""
    parts: list[bytes] = []
    row = x[i].tolist()
    for j, kind in enumerate(g.kinds):
        parts.append(g.lits[j])
        v = row[j]
        if kind == "i":
            parts.append(b"%d" % v)
        elif kind == "x":
            parts.append(xtext.cell(j, i))
        else:
            d = int(kind[1:])
            if kind[0] == "m" and flags[j][i]:
                parts.append(b"%d" % (v // 10**d))
            else:
                ip, fp = divmod(-v if v < 0 else v, 10**d)
                frac = (b"%0*d" % (d, fp)).rstrip(b"0") or b"0"
                parts.append(b"%s%d.%s" % (b"-" if v < 0 else b"", ip, frac))
    parts.append(g.lits[-1])
    return b"".join(parts)


def _render(g: _Group, x: np.ndarray, xtext: Mapping[int, list[bytes]], flags: dict[int, np.ndarray],
            rows: slice | None = None, exact: bool = True) -> list:
    if rows is not None:
        x = x[rows]
        flags = {j: f[rows] for j, f in flags.items()}
        xtext = {j: v[rows] for j, v in xtext.items()}
    n = len(x)
    m = len(g.kinds)
    if n == 1:  # one line (a seek): no folding, one concatenation
        cells = _cells(x, g.kinds, xtext, flags, list(range(m)))
        one: list[np.ndarray] = []
        for j in range(m):
            one += (np.frombuffer(g.lits[j], dtype=np.uint8)[None, :], cells[j])
        one.append(np.frombuffer(g.lits[-1], dtype=np.uint8)[None, :])
        return [numtext.join(one)]
    # Columns that do not change in this chunk (most of a report: keys, capacities, categories)
    # are formatted once and become part of the literal text.
    const = (x == x[:1]).all(axis=0) if n > 1 else np.ones(m, dtype=bool)
    for j, v in xtext.items():
        const[j] = const[j] and v.count(v[0]) == len(v)
    for j, f in flags.items():
        const[j] = const[j] and bool((f == f[0]).all())
    fixed = [j for j in range(m) if const[j]]
    if not exact and any(g.kinds[j] == "x" and not const[j] for j in range(m)):
        exact = True  # a changing text cell may sit inside a string: padding it would change the string
    first = _cells(x[:1], g.kinds, {j: v[:1] for j, v in xtext.items()}, {j: f[:1] for j, f in flags.items()}, fixed)
    moving = _cells(x, g.kinds, xtext, flags, [j for j in range(m) if not const[j]])
    blocks: list[np.ndarray] = []
    lit = bytearray()
    for j in range(m):
        lit += g.lits[j]
        if const[j]:
            row = first[j][0]
            lit += row[row != 0].tobytes()
        else:
            if lit:
                blocks.append(numtext.literal(bytes(lit), n))
                lit = bytearray()
            blocks.append(moving[j])
    blocks.append(numtext.literal(bytes(lit + g.lits[-1]) + b"\n", n))
    if exact:
        return numtext.join(blocks).split(b"\n")[:-1]
    # For parsing only: pad numbers with spaces (JSON whitespace) and skip the pass that removes
    # the padding; each line is a fixed-width slice of one buffer.
    for j in moving:
        cell = moving[j]
        cell[cell == 0] = ord(" ")
    buf = memoryview(np.concatenate(blocks, axis=1).tobytes())
    w = len(buf) // n if n else 0
    return [buf[i * w:(i + 1) * w] for i in range(n)]


# -- chunk -----------------------------------------------------------------------------------------
class _Group(msgspec.Struct, array_like=True):
    rows: list[int]
    lits: list[bytes]
    kinds: list[str]
    spec: list[list]
    widths: list[int]
    xtext: dict[int, bytes]  # a text column's cells joined by NUL (which JSON text never holds)
    flags: dict[int, bytes]


class _Texts(Mapping):
    """A group's text columns, split into cells only when asked: most are constant keys ("0", "1", ...)
    that a reader of the numbers never needs one by one."""

    def __init__(self, joined: dict[int, bytes], n: int) -> None:
        self._joined = joined
        self._split: dict[int, list[bytes]] = {}
        self.n = n
        for v in joined.values():
            if v.count(b"\x00") != n - 1:
                raise ValueError("columnar chunk: a text column has the wrong number of cells")

    def __getitem__(self, j: int) -> list[bytes]:
        v = self._split.get(j)
        if v is None:
            v = self._split[j] = self._joined[j].split(b"\x00")
        return v

    def __iter__(self) -> Iterator[int]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def cell(self, j: int, i: int) -> bytes:
        if i == 0 and j not in self._split:
            return self._joined[j].split(b"\x00", 1)[0]
        return self[j][i]

    def constant(self, j: int) -> bool:
        v = self._joined[j]
        first = self.cell(j, 0)
        return len(v) == self.n * (len(first) + 1) - 1 and v == (first + b"\x00") * (self.n - 1) + first


class _Header(msgspec.Struct, array_like=True):
    n: int
    groups: list[_Group]


_NUM = re.compile(rb"([-0-9][0-9.eE+-]*)")  # a superset of JSON numbers; _real() sorts them out


def _real(lits: list[bytes]) -> list[bool]:
    """Which tokens are JSON numbers (the others are digits inside strings: "nc_v3.10", "ami-0c")."""
    return [a[-1:] in (b":", b",", b"[") and b[:1] in (b",", b"]", b"}") for a, b in zip(lits[:-1], lits[1:], strict=True)]


def _index_keys(line: bytes, lits: list[bytes], real: list[bool]) -> list[int]:
    """The index key of each number token of a shape (from its first line): -1 for tokens that sit
    inside strings or when the tokens and the document's numbers disagree."""
    try:
        keys = [_index_key(p) for p in number_paths(_json_decode(line))]
    except (msgspec.DecodeError, RecursionError):
        return [-1] * len(real)
    if sum(real) != len(keys):
        return [-1] * len(real)
    it = iter(keys)
    return [next(it) if r else -1 for r in real]


def _columns(tokens: list[list[bytes]], real: list[bool]) -> tuple[list[str], np.ndarray, dict[int, list[bytes]], dict[int, bytes]]:
    """Token rows -> column kinds, the int64 matrix, raw texts of 'x' columns, int flags of 'm' columns.

    Kinds: 'i' integers; 'dD' decimals held as value * 10**D; 'mD' the same with some cells written
    as integers (flags mark them); 'x' anything else, kept as text."""
    n, m = len(tokens), len(tokens[0])
    t = np.array(tokens, dtype=bytes)
    u = t.view(np.uint8).reshape(n, m, t.dtype.itemsize)
    dot = (u == ord(".")).any(axis=2)
    exp = ((u == ord("e")) | (u == ord("E"))).any(axis=2)
    x = np.zeros((n, m), dtype=np.int64)
    kinds = ["i"] * m
    xtext: dict[int, list[bytes]] = {}
    flags: dict[int, bytes] = {}
    if u.shape[2] > 1:  # "007" and "-01" are not how a number prints: keep such columns as text
        digit1 = (u[:, :, 1] >= ord("0")) & (u[:, :, 1] <= ord("9"))
        lead0 = (u[:, :, 0] == ord("0")) & digit1
        if u.shape[2] > 2:
            lead0 |= (u[:, :, 0] == ord("-")) & (u[:, :, 1] == ord("0")) & (u[:, :, 2] >= ord("0")) & (u[:, :, 2] <= ord("9"))
        exp |= lead0
    col_exp = exp.any(axis=0) | ~np.asarray(real, dtype=bool)
    col_dot_all = dot.all(axis=0)
    col_dot_any = dot.any(axis=0)
    ints = np.flatnonzero(~col_dot_any & ~col_exp)
    if len(ints):
        try:
            x[:, ints] = t[:, ints].astype(np.int64)
        except (OverflowError, ValueError):
            for j in ints:
                try:
                    x[:, j] = t[:, j].astype(np.int64)
                except (OverflowError, ValueError):
                    kinds[j] = "x"
    fl = np.flatnonzero(col_dot_any & ~col_exp)
    if len(fl):
        v = t[:, fl].astype(np.float64)
        found = np.full(len(fl), -1)
        for d in range(_MAX_DEC + 1):
            p = 10.0**d
            s = np.rint(v * p)
            ok = (found < 0) & (np.abs(s) < 2**53).all(axis=0) & (s / p == v).all(axis=0)
            found[ok] = d
            if (found >= 0).all():
                break
        for jj, j in enumerate(fl):
            d = int(found[jj])
            if d < 0:
                kinds[j] = "x"
                continue
            d = max(d, 1)
            x[:, j] = np.rint(v[:, jj] * 10.0**d).astype(np.int64)
            kinds[j] = f"d{d}" if col_dot_all[j] else f"m{d}"
            if not col_dot_all[j]:
                flags[int(j)] = np.packbits(~dot[:, j]).tobytes()
    for j in np.flatnonzero(col_exp):
        kinds[j] = "x"
    for jx, kind in enumerate(kinds):
        if kind == "x":
            xtext[jx] = t[:, jx].tolist()
            x[:, j] = 0
    return kinds, x, xtext, flags


def _fold(lits: list[bytes], real: list[bool], kinds: list[str], x: np.ndarray, xtext: dict[int, list[bytes]],
          flags: dict[int, bytes]) -> tuple[list[bytes], list[bool], list[str], np.ndarray, dict[int, list[bytes]],
                                            dict[int, bytes]]:
    """Text tokens that never change in the chunk (digits inside strings: tags, UUIDs, core keys)
    become part of the literal text around them, so a reader never splits or checks them (they
    were a third of a trn1.32xlarge chunk's decoded bytes)."""
    fold = {j for j, v in xtext.items() if not real[j] and v.count(v[0]) == len(v)}
    if not fold:
        return lits, real, kinds, x, xtext, flags
    out = []
    cur = lits[0]
    for j in range(len(kinds)):
        if j in fold:
            cur += xtext[j][0] + lits[j + 1]
        else:
            out.append(cur)
            cur = lits[j + 1]
    out.append(cur)
    keep = [j for j in range(len(kinds)) if j not in fold]
    new = {j: q for q, j in enumerate(keep)}
    kept_real = [real[j] for j in keep]
    if _real(out) != kept_real:  # (never seen: the text on either side of a number is unchanged)
        return lits, real, kinds, x, xtext, flags
    return (out, kept_real, [kinds[j] for j in keep], x[:, keep], {new[j]: v for j, v in xtext.items() if j in new},
            {new[j]: v for j, v in flags.items()})


def encode(lines: list[bytes]) -> bytes | None:
    """Columnar form of the lines (to be zstd-compressed by the caller), or None when it does not
    reproduce them byte for byte."""
    if not lines:
        return None
    try:
        return _encode(lines)
    except Exception:  # data the encoder did not foresee: the caller keeps the JSON lines
        return None


def _encode(lines: list[bytes]) -> bytes | None:
    shapes: dict[bytes, tuple[list[bytes], list[int], list[list[bytes]]]] = {}
    for i, line in enumerate(lines):
        parts = _NUM.split(line.rstrip(b"\n"))
        lits = parts[0::2]
        key = b"\x00".join(lits)
        g = shapes.get(key)
        if g is None:
            g = shapes[key] = (lits, [], [])
        g[1].append(i)
        g[2].append(parts[1::2])
    if len(shapes) > max(4, len(lines) // 8):
        return None  # the shape keeps changing: no columns to speak of
    groups: list[_Group] = []
    bodies: list[bytes] = []
    for lits, rows, tokens in shapes.values():
        m = len(lits) - 1
        if m:
            real = _real(lits)
            kinds, x, xtext, flags = _columns(tokens, real)
            lits, real, kinds, x, xtext, flags = _fold(lits, real, kinds, x, xtext, flags)
            keys = _index_keys(lines[rows[0]], lits, real)
            spec, res = _choose(x, keys, kinds, b"\x00".join(lits))
        else:
            kinds, x, xtext, flags, spec, res = [], np.zeros((len(rows), 0), dtype=np.int64), {}, {}, [], \
                np.zeros((len(rows), 0), dtype=np.int64)
        widths, body = _pack(res)
        groups.append(_Group(rows, lits, kinds, spec, widths, {j: b"\x00".join(v) for j, v in xtext.items()}, flags))
        bodies.append(body)
    head = msgspec.msgpack.encode(_Header(len(lines), groups))
    blob = MAGIC + struct.pack("<I", len(head)) + head + b"".join(bodies)
    try:
        if decode(blob).lines() != [ln.rstrip(b"\n") for ln in lines]:
            return None
    except Exception:  # any doubt: keep the JSON lines
        return None
    return blob


@dataclass
class ColumnChunk:
    n: int
    # each group with its decoded number matrix, text columns split into cells, flags as booleans
    groups: list[tuple[_Group, np.ndarray, _Texts, dict[int, np.ndarray]]]

    def lines(self, exact: bool = True) -> list:
        """The reports, byte for byte; with exact=False, JSON that parses to the same values but
        may carry extra spaces (faster: for decoding, not for storing)."""
        out: list = [b""] * self.n
        for g, x, xt, fl in self.groups:
            texts: list = []
            for a in range(0, len(g.rows), _RENDER_ROWS):  # in slices: bounded temporary arrays
                texts += _render(g, x, xt, fl, slice(a, a + _RENDER_ROWS), exact=exact)
            for i, text in zip(g.rows, texts, strict=True):
                out[i] = text
        return out

    def line(self, i: int) -> bytes:
        for g, x, xt, fl in self.groups:
            if i in g.rows:
                return _line(g, x, xt, fl, g.rows.index(i))
        raise IndexError(i)


def is_columnar(blob: bytes) -> bool:
    return blob[:4] == MAGIC


class _WireGroup(msgspec.Struct, array_like=True):
    """A _Group as read: the parts that repeat from chunk to chunk of a shape are left raw."""

    rows: list[int]
    lits: msgspec.Raw
    kinds: msgspec.Raw
    spec: msgspec.Raw
    widths: list[int]
    xtext: dict[int, bytes]
    flags: dict[int, bytes]


class _WireHeader(msgspec.Struct, array_like=True):
    n: int
    groups: list[_WireGroup]


# Decoded literals, kinds and specs by their msgpack bytes: the chunks of a shape share them, so a
# reader decodes them (and derives what it needs from them: derived) once per shape, not per chunk.
_PARTS: dict[tuple[str, bytes], list] = {}


def _part(name: str, raw: msgspec.Raw, typ: type) -> list:
    key = (name, bytes(raw))
    v = _PARTS.get(key)
    if v is None:
        if len(_PARTS) > 96:
            _PARTS.clear()
        v = _PARTS[key] = msgspec.msgpack.decode(raw, type=typ)
    return v


_DERIVED: dict[tuple[int, str], tuple[object, object]] = {}


def derived(part: object, name: str, fn):  # noqa: ANN001, ANN201 - any part, any derivation
    """fn(part), computed once per shared header part (a shape's literals or kinds, see _PARTS).
    Keyed by the part's id, which stays valid because the entry holds the part."""
    hit = _DERIVED.get((id(part), name))
    if hit is not None and hit[0] is part:
        return hit[1]
    v = fn(part)
    if len(_DERIVED) > 256:
        _DERIVED.clear()
    _DERIVED[(id(part), name)] = (part, v)
    return v


def decimals_of(kinds: list[str]) -> np.ndarray:
    """Each column's decimals (0 for integers and text), for the shared kinds list of a shape."""
    return derived(kinds, "decimals", lambda ks: np.array([int(k[1:]) if k[0] in "dm" else 0 for k in ks]))


def _header(blob: bytes) -> tuple[_Header, int]:
    if blob[:4] != MAGIC:
        raise ValueError("not a columnar chunk")
    (hl,) = struct.unpack_from("<I", blob, 4)
    wire = msgspec.msgpack.decode(memoryview(blob)[8:8 + hl], type=_WireHeader)
    groups = [_Group(w.rows, _part("lits", w.lits, list[bytes]), _part("kinds", w.kinds, list[str]),
                     _part("spec", w.spec, list[list]), w.widths, w.xtext, w.flags) for w in wire.groups]
    return _Header(wire.n, groups), 8 + hl


def decode(blob: bytes) -> ColumnChunk:
    return decode_lazy(blob).materialize()


def _plan(spec: list[list], cols: list[int]) -> tuple[np.ndarray, list[list], np.ndarray]:
    """The columns to decode for `cols` (with the base columns they are predicted from), their spec
    renumbered among themselves, and where each of `cols` lands. Made once per shared spec and
    column list (a reader passes the same list for every chunk of a shape)."""
    plans: dict[int, tuple[list[int], tuple]] = derived(spec, "plans", lambda _s: {})
    hit = plans.get(id(cols))
    if hit is not None and hit[0] is cols:  # (the entry holds `cols`, so its id stays its own)
        return hit[1]
    need = set(cols)
    for j in cols:
        m_, r, _k = spec[j]
        if m_ >= REF:
            need.update(r if m_ == SUM else (r,))
    allc = sorted(need)
    pos = {j: i for i, j in enumerate(allc)}
    sub = []
    for j in allc:
        m_, r, k = spec[j]
        sub.append([m_, [pos[q] for q in r] if m_ == SUM else pos[r] if m_ >= REF else r, k])
    out = (np.asarray(allc, dtype=np.int64), sub, np.array([pos[j] for j in cols], dtype=np.int64))
    plans[id(cols)] = (cols, out)
    return out


class LazyGroup:
    """One shape of a chunk, its columns decoded when asked: a reader that needs a few hundred of a
    report's thousands of numbers (the export) decodes only those and what they are predicted from."""

    def __init__(self, g: _Group, body: bytes | memoryview) -> None:
        self.g = g
        self.n = n = len(g.rows)
        self.body = body
        self.xt = _Texts(g.xtext, n)
        self.fl = {j: np.unpackbits(np.frombuffer(f, dtype=np.uint8), count=n).astype(bool)
                   for j, f in g.flags.items()}
        w = np.asarray(g.widths, dtype=np.int64)
        # where each column's byte planes start in the body (columns are grouped by width 1, 2, 4, 8)
        self._start = np.zeros(len(w), dtype=np.int64)
        off = 0
        for width in (1, 2, 4, 8):
            cols = np.flatnonzero(w == width)
            self._start[cols] = off + np.arange(len(cols)) * width * n
            off += len(cols) * width * n
        self._w = w
        self.ahead: tuple | None = None  # what a reader decoded ahead on another thread (colread)

    def full(self) -> np.ndarray:
        return _unpredict(self._residuals(np.arange(len(self._w)), self.n), self.g.spec)

    def _residuals(self, cols: np.ndarray, rows: int) -> np.ndarray:
        """Residuals of `cols` ([rows, len(cols)]), reading only their byte planes."""
        n = self.n
        out = np.empty((len(cols), rows), dtype=np.int64)
        w = self._w[cols]
        out[w == 0] = 0  # (all-zero columns store no bytes; every other column is written below)
        for width in (1, 2, 4, 8):
            sel = np.flatnonzero(w == width)
            if not len(sel):
                continue
            in_class = np.flatnonzero(self._w == width)
            base = int(self._start[in_class[0]])
            a = np.frombuffer(self.body, dtype=np.uint8, count=len(in_class) * width * n,
                              offset=base).reshape(len(in_class), width, n)
            q = np.searchsorted(in_class, cols[sel])  # each column's place among its width's columns
            if width == 1:  # most columns
                z = a[q, 0, :rows]
            else:
                b = a[q] if len(q) < len(in_class) else a
                planes = np.empty((len(sel), rows, width), dtype=np.uint8)
                for p in range(width):  # plane by plane: several times faster than one transposing copy
                    planes[:, :, p] = b[:, p, :rows]
                z = planes.view(f"<u{width}").reshape(len(sel), rows)
            # the zigzag undone in the column's own width (signed: 0, 1, 2, 3 -> 0, -1, 1, -2), then widened
            signed = np.dtype(f"<i{width}")
            out[sel] = (z >> 1).astype(signed) ^ -(z & 1).astype(signed)
        return out.T

    def columns(self, cols: list[int]) -> np.ndarray:
        """Decoded values of `cols`, [rows, len(cols)]: only their byte planes and their references'."""
        allc, sub, take = _plan(self.g.spec, cols)
        x = _unpredict(self._residuals(allc, self.n), sub)
        return x[:, take]

    def row0(self) -> np.ndarray:
        """[1, columns]: every column's first value (cheap: one residual per column)."""
        return _unpredict(self._residuals(np.arange(len(self._w)), 1), self.g.spec)


@dataclass
class LazyChunk:
    n: int
    groups: list[LazyGroup]

    def materialize(self) -> ColumnChunk:
        return ColumnChunk(self.n, [(lg.g, lg.full(), lg.xt, lg.fl) for lg in self.groups])

    def lines(self, exact: bool = True) -> list:
        return self.materialize().lines(exact)


def decode_lazy(blob: bytes) -> LazyChunk:
    head, off = _header(blob)
    groups = []
    for g in head.groups:
        size = sum(g.widths) * len(g.rows)
        if len(g.widths) != len(g.kinds) or len(g.spec) != len(g.kinds) or off + size > len(blob):
            raise ValueError("columnar chunk: header and body disagree")
        groups.append(LazyGroup(g, memoryview(blob)[off:off + size]))  # (a view: the body is megabytes)
        off += size
    if off != len(blob):
        raise ValueError("columnar chunk has trailing bytes")
    return LazyChunk(head.n, groups)
