"""Numbers to text for whole columns at once (numpy), for the profile codec and the CSV export.

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


def decimals(scaled: np.ndarray, d: int) -> np.ndarray:
    """int64 [n] holding value * 10**d -> '-12.345' (d digits after the point; '12.0' when d == 0,
    so a float stays a float when the text is parsed again)."""
    a = np.asarray(scaled, dtype=np.int64)
    if d == 0:
        return np.concatenate([ints(a), literal(b".0", len(a))], axis=1)
    return table(a[:, None], d)[0]


def strings(items: list[bytes]) -> np.ndarray:
    """Arbitrary cell texts -> uint8 [n, w], NUL-padded (for the rare cells numpy cannot format)."""
    arr = np.array(items, dtype=bytes)
    w = max(arr.dtype.itemsize, 1)
    return np.frombuffer(arr.astype(f"S{w}").tobytes(), dtype=np.uint8).reshape(len(items), w)


def literal(text: bytes, n: int) -> np.ndarray:
    return np.broadcast_to(np.frombuffer(text, dtype=np.uint8), (n, len(text)))


def join(blocks: list[np.ndarray]) -> bytes:
    """Concatenate blocks row by row and drop the NUL padding."""
    m = np.concatenate(blocks, axis=1) if len(blocks) > 1 else np.ascontiguousarray(blocks[0])
    flat = m.ravel()
    return flat[flat != 0].tobytes()


def table(block: np.ndarray, dec: int | None, shortest: bool = False) -> list[np.ndarray]:
    """int64 [rows, cols] -> one uint8 block per column (as `ints`, or as `decimals` when `dec` is
    given; `shortest` drops trailing zeros after the point but keeps one digit, which is how a
    shortest round-trip float prints). Columns of similar width are formatted together."""
    n, c = block.shape
    mag, neg = _magnitude(block)
    if dec is None:
        ip = mag
        fp = None
    else:
        p = np.uint64(10**dec)
        ip, fp = mag // p, mag % p
    nd = np.searchsorted(_POW10, ip.ravel(), side="right").clip(1, 20).reshape(n, c)
    wcol = (nd + neg).max(axis=0) if n else np.ones(c, dtype=np.int64)
    result: list[np.ndarray] = [np.zeros((n, 0), dtype=np.uint8)] * c
    bucket = np.digitize(wcol, [4, 8, 12])
    for b in np.unique(bucket):
        cols = np.flatnonzero(bucket == b)
        wi = int(wcol[cols].max())
        w = wi + (1 + dec if dec is not None else 0)
        out = np.zeros((n, len(cols), w), dtype=np.uint8)
        m = ip[:, cols].copy()
        ndb = nd[:, cols]
        for k in range(wi):
            out[:, :, wi - 1 - k] = np.where(k < ndb, (m % np.uint64(10)).astype(np.uint8) + _ZERO, 0)
            m //= np.uint64(10)
        negb = neg[:, cols]
        if negb.any():
            r, q = np.nonzero(negb)
            out[r, q, wi - 1 - ndb[r, q]] = ord("-")
        if dec is not None and fp is not None:
            out[:, :, wi] = ord(".")
            f = fp[:, cols].copy()
            for k in range(dec):
                out[:, :, w - 1 - k] = (f % np.uint64(10)).astype(np.uint8) + _ZERO
                f //= np.uint64(10)
            if shortest:
                strip = np.ones((n, len(cols)), dtype=bool)
                for pos in range(w - 1, wi + 1, -1):
                    strip &= out[:, :, pos] == _ZERO
                    out[:, :, pos][strip] = 0
        for jj, j in enumerate(cols):
            result[j] = out[:, jj, :]
    return result
