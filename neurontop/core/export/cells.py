"""Numbers to CSV text, a block at a time: the cells of a whole batch formatted at once.

Each cell is written as Python's f"{v:.{d}f}" writes it (`fmt`, the reference; tests compare cell by
cell), without a Python call per cell: values are scaled to integers in one array operation,
small ones looked up in tables of 8-byte cells, the others formatted four digits per lookup
(numtext). docs/export.md ("How it is fast") says why.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..store import numtext


def fmt(v: float | None, dec: int) -> str:
    """One cell as the export writes it (the reference for the block formatter)."""
    if v is None or not math.isfinite(v):
        return ""
    if dec == 0:
        return str(int(round(v)))
    return f"{v:.{dec}f}"


# -- numbers to text, a block at a time ------------------------------------------------------------
def _scaled(v: np.ndarray, d: int) -> np.ndarray:
    """round(v * 10**d) as int64, exactly as Python's f"{v:.{d}f}" rounds (NaN -> 0)."""
    with np.errstate(invalid="ignore", over="ignore"):
        s = v * 10.0**d  # (NaN stays NaN; a value too large for int64 or float raises below)
        r = np.rint(s)
        a = np.abs(s)
        fits = a < 2.0**62  # (NaN and inf do not: they are empty cells)
        if ((a != np.inf) & ~fits & (a == a)).any():
            raise OverflowError("export: a value too large for the block formatter")
        # The product may have rounded across a .5: redo those few cells as Python formats them.
        near = np.abs(s - r) >= 0.5 - a * 1e-15
        out = np.where(fits, r, 0.0).astype(np.int64)
    for idx in zip(*np.nonzero(near), strict=True):
        out[idx] = int(f"{float(v[idx]):.{d}f}".replace(".", ""))
    return out


def _scaled_columns(m: np.ndarray, decimals: list[int]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """[n, k] floats -> (round(v * 10**d) as int64 [n, k], missing [n, k], columns too large for
    int64 (formatted one cell at a time instead))."""
    n, k = m.shape
    scaled = np.zeros((n, k), dtype=np.int64)
    dec = np.asarray(decimals)
    slow: list[int] = []
    for d in sorted(set(dec.tolist())):  # (not np.unique: it imports numpy.ma, 10 ms per process)
        cols = np.flatnonzero(dec == d)
        try:
            scaled[:, cols] = _scaled(m[:, cols], d)
        except OverflowError:
            slow += cols.tolist()
    return scaled, ~np.isfinite(m), slow


def _column_blocks(m: np.ndarray, decimals: list[int], scaled: np.ndarray, missing: np.ndarray,
                   slow: list[int], cols: list[int]) -> dict[int, np.ndarray]:
    """The numtext block of each column in `cols`, missing cells empty."""
    out: dict[int, np.ndarray] = {}
    by_dec: dict[int, list[int]] = {}
    for j in cols:
        if j in slow:
            texts = [fmt(float(x), decimals[j]) for x in m[:, j]]
            out[j] = numtext.strings([(t[1:] if t[:1] == "-" and float(t) == 0 else t).encode() for t in texts])
        else:
            by_dec.setdefault(decimals[j], []).append(j)
    for d, js in by_dec.items():
        for j, blk in zip(js, numtext.table(scaled[:, js], d if d else None), strict=True):
            if missing[:, j].any():
                blk = blk.copy()
                blk[missing[:, j]] = 0
            out[j] = blk
    return out


def format_block(m: np.ndarray, decimals: list[int]) -> list[np.ndarray]:
    """[n, k] floats -> one uint8 block per column (numtext), NaN cells empty."""
    scaled, missing, slow = _scaled_columns(m, decimals)
    blocks = _column_blocks(m, decimals, scaled, missing, slow, list(range(m.shape[1])))
    return [blocks[j] for j in range(m.shape[1])]


_LUT_BITS = 17  # scaled values a lookup table covers: up to 1310.71 at two decimals
_LUT_DEC = 5  # ',' and 1.31071 fill the 8 bytes of a cell: more decimals do not fit
_ZERO = numtext._ZERO


@lru_cache(maxsize=32)
def _cell_table(d: int, bits: int) -> np.ndarray:
    """',' then the text of k / 10**d for k in [0, 2**bits), each an 8-byte cell, and a lone ','
    (a missing value) at 2**bits. A cell is ',', the integer part right-aligned in a fixed field,
    '.', the d decimals; NUL bytes pad the field (the row join drops them)."""
    size = 1 << bits
    ip, fp = np.divmod(np.arange(size, dtype=np.int64), 10**d)
    width = len(str((size - 1) // 10**d))
    cells = np.zeros((size + 1, 8), dtype=np.uint8)
    cells[:, 0] = ord(",")
    for p in range(width):  # the p-th digit from the right; leading zeros stay NUL (but 0 is "0")
        digit = (ip // 10**p) % 10 + _ZERO
        cells[:size, width - p] = np.where((ip >= 10**p) | (p == 0), digit, 0)
    if d:
        cells[:size, 1 + width] = ord(".")
        for p in range(d):
            cells[:size, 1 + width + d - p] = (fp // 10**p) % 10 + _ZERO
    return cells.view("<u8").ravel()


def row_blocks(m: np.ndarray, decimals: list[int]) -> list[np.ndarray]:
    """[n, k] floats -> blocks that, joined, give ',v1,v2,...,vk' for each row (NaN cells empty).
    Consecutive columns of the same precision are one block. Most figures (percentages, TFLOP/s,
    flags) are small non-negative numbers: one table lookup per cell. Others are formatted four
    digits per lookup (numtext.cells)."""
    n, k = m.shape
    scaled, missing, slow = _scaled_columns(m, decimals)
    dec = np.asarray(decimals)
    in_table = (dec <= _LUT_DEC) & (((scaled >= 0) & (scaled < 1 << _LUT_BITS)) | missing).all(axis=0)
    in_table[slow] = False
    is_slow = np.zeros(k, dtype=bool)
    is_slow[slow] = True
    out: list[np.ndarray] = []
    j = 0
    while j < k:
        e = j + 1
        while e < k and in_table[e] == in_table[j] and is_slow[e] == is_slow[j] and dec[e] == dec[j]:
            e += 1
        d = int(dec[j])
        run, gone = scaled[:, j:e], missing[:, j:e]  # (missing cells hold 0)
        if in_table[j]:
            bits = max(10, int(run.max()).bit_length())  # the smallest table that holds the run
            out.append(_cell_table(d, bits)[np.where(gone, 1 << bits, run)].view(np.uint8).reshape(n, -1))
        elif is_slow[j]:
            blocks = _column_blocks(m, decimals, scaled, missing, slow, list(range(j, e)))
            for q in range(j, e):
                out += (numtext.literal(b",", n), blocks[q])
        else:
            blk = numtext.cells(run, d if d else None)
            if gone.any():
                blk.reshape(n, e - j, -1)[gone, 1:] = 0  # an empty cell: its comma alone
            out.append(blk)
        j = e
    return out


def iso_block(ts: np.ndarray) -> np.ndarray:
    """Unix times -> ISO 8601 UTC with milliseconds as uint8 [n, w] ('' for NaN), as datetime writes
    them (`datetime.fromtimestamp(ts, utc).isoformat(timespec="milliseconds")`, with Z)."""
    ok = np.isfinite(ts)
    t = np.where(ok, ts, 0.0)
    sec = np.floor(t)
    us = np.rint((t - sec) * 1e6)  # datetime.fromtimestamp rounds to microseconds, half to even
    ms = sec.astype(np.int64) * 1000 + (us.astype(np.int64) // 1000)
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms").astype("S23")
    blk = np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(len(ts), 23)
    blk = np.concatenate([blk, numtext.literal(b"Z", len(ts))], axis=1)
    if not ok.all():
        blk = blk.copy()
        blk[~ok] = 0
    return blk
