"""Numbers to text for whole columns at once (numpy): the profile codec rebuilds a columnar chunk's
report text with it (the export's CSV is written by polars).

A column becomes a uint8 matrix [rows, width]: the number right-aligned, NUL bytes to its left.
Callers concatenate such blocks with literal blocks and drop every NUL in one pass, so a table of
any shape is written without a Python-level call per cell (which is what made export slow).
"""

from __future__ import annotations

import numpy as np

_ZERO = ord("0")
_POW10 = np.array([10**k for k in range(19)], dtype=np.uint64)


def _magnitude(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.int64)
    neg = a < 0
    # -x in uint64 is exact for every int64, including its minimum
    mag = np.where(neg, (~a.view(np.uint64)) + np.uint64(1), a.view(np.uint64))
    return mag, neg


def ints(a: np.ndarray) -> np.ndarray:
    """int64 [n] -> uint8 [n, w]: '-123' right-aligned."""
    return table(np.asarray(a, dtype=np.int64)[:, None], None)[0]


def strings(items: list[bytes]) -> np.ndarray:
    """Arbitrary cell texts -> uint8 [n, w], NUL-padded (for the rare cells numpy cannot format)."""
    arr = np.array(items, dtype=bytes)
    w = max(arr.dtype.itemsize, 1)
    return np.frombuffer(arr.astype(f"S{w}").tobytes(), dtype=np.uint8).reshape(len(items), w)


def literal(text: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def join(blocks: list[np.ndarray]) -> bytes:
    """Concatenate blocks row by row and drop the NUL padding (bytes.translate deletes them
    faster than a numpy mask selects the rest)."""
    m = np.concatenate(blocks, axis=1) if len(blocks) > 1 else np.ascontiguousarray(blocks[0])
    return m.tobytes().translate(None, b"\0")


# "0000" ... "9999" as little-endian uint32 words: four digit characters per lookup
_LUT4 = np.frombuffer("".join(f"{k:04d}" for k in range(10000)).encode(), dtype="<u4")
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


def _groups(words: np.ndarray, m: np.ndarray) -> None:
    """Fill uint32 words [rows, cols, G] with the last 4*G digits of uint64 `m` [rows, cols]
    (zero-padded on the left; viewed as bytes, most significant digit first)."""
    small = not m.size or int(m.max()) < 2**52  # exact in float64, where division is cheap
    v = m.astype(np.float64) if small else m.copy()
    for g in range(words.shape[2] - 1, -1, -1):
        if small:
            q = np.floor(v / 1e4)
            r = (v - q * 1e4).astype(np.intp)
            v = q
        else:
            r = (v % np.uint64(10000)).astype(np.intp)
            v //= np.uint64(10000)
        words[:, :, g] = _LUT4[r]


_MASK32 = np.array([0xFFFFFFFF, 0xFFFFFF00, 0xFFFF0000, 0xFF000000, 0], dtype="<u4")  # keep all but the first k bytes


def _parts(block: np.ndarray, dec: int | None) -> tuple:
    """Magnitudes split at the point: integer part, fraction (or None), digit counts, signs."""
    n, c = block.shape
    mag, neg = _magnitude(block)
    if dec is None:
        ip, fp = mag, None
    else:
        p = np.uint64(10**dec)
        ip, fp = mag // p, mag % p
    nd = np.searchsorted(_POW10, ip.ravel(), side="right").clip(1, 20).reshape(n, c)
    return ip, fp, nd, neg


def _format(ip: np.ndarray, fp: np.ndarray | None, nd: np.ndarray, neg: np.ndarray, dec: int | None,
            gi: int) -> np.ndarray:
    """Columns [rows, k] as uint8 [rows, k, 4 * (gi + gf)]: the integer part right-aligned in gi
    four-digit words (leading zeros NUL, the sign before the first digit), then the point and the
    fraction."""
    n, k = ip.shape
    gf = 0 if not dec else dec // 4 + 1  # words for the fraction, with room for the point
    words = np.empty((n, k, gi + gf), dtype="<u4")
    _groups(words[:, :, :gi], ip)
    blank = 4 * gi - nd  # leading zeros of the integer part
    for g in range(gi):
        words[:, :, g] &= _MASK32[np.clip(blank - 4 * g, 0, 4)]
    out = words.view(np.uint8).reshape(n, k, 4 * (gi + gf))
    if neg.any():
        r, q = np.nonzero(neg)
        out[r, q, blank[r, q] - 1] = ord("-")
    if dec:
        assert fp is not None
        _groups(words[:, :, gi:], fp)
        dot = 4 * (gi + gf) - dec - 1
        out[:, :, 4 * gi:dot] = 0
        out[:, :, dot] = ord(".")
    return out


def table(block: np.ndarray, dec: int | None, shortest: bool = False) -> list[np.ndarray]:
    """int64 [rows, cols] -> one uint8 block per column (as `ints`, or with `dec` digits after the
    point when `dec` is given; `shortest` drops trailing zeros after the point but keeps one digit, which is how a
    shortest round-trip float prints). Columns of similar width are formatted together.

    A block is the digits with NUL in place of leading zeros (the sign in the last of them), then
    the point and the fraction: callers drop the NULs when they join blocks."""
    n, c = block.shape
    ip, fp, nd, neg = _parts(block, dec)
    wcol = nd.max(axis=0) if n else np.ones(c, dtype=np.int64)
    result: list[np.ndarray] = [np.zeros((n, 0), dtype=np.uint8)] * c
    gi_col = wcol // 4 + 1  # 4-digit words for the integer part, with room for a sign
    for gi in sorted(set(gi_col.tolist())):  # (not np.unique: it imports numpy.ma, 10 ms per process)
        cols = np.flatnonzero(gi_col == gi)
        k = len(cols)
        out = _format(ip[:, cols], None if fp is None else fp[:, cols], nd[:, cols], neg[:, cols], dec, gi)
        if dec and shortest:  # the codec's text: no NUL between the digits and the point (it pads with spaces)
            dot = out.shape[2] - dec - 1
            if dec > 1:
                strip = np.ones((n, k), dtype=bool)
                for pos in range(out.shape[2] - 1, dot + 1, -1):
                    strip &= out[:, :, pos] == _ZERO
                    out[:, :, pos][strip] = 0
            out = np.concatenate([out[:, :, :4 * gi], out[:, :, dot:]], axis=2)
        for jj, j in enumerate(cols.tolist()):
            result[j] = out[:, jj, :]
    return result
