"""Export as Arrow tables: Parquet and Arrow IPC files, and the Python API's tables.

The rows are the CSV export's (the same range, `--every` bins and fixed columns: this subclasses
its pipeline and replaces only the writing), typed: `time_s` float64 seconds from the first
report, `timestamp` a UTC timestamp in milliseconds, `step` int64, and each figure int64 where its
CSV column is an integer (bytes, counts, hint flags) and float64 otherwise. Every value is the
CSV cell's value: rounded to the column's precision as the CSV writes it, and null where the cell
is empty. The long layout is tidy: time_s, timestamp, step, device, core, link, metric, value, with
NeuronLink columns as one `link_bytes_per_s` metric and the link ("nd0-nd1") in its own column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..analysis.thresholds import DEFAULTS, Thresholds
from .cells import _scaled
from .csv_writer import CsvExporter

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ImportError("Parquet, Arrow and the Python API need pyarrow: pip install 'neuron-top[export]'") from None
    return pyarrow


def _ms(ts: np.ndarray) -> np.ndarray:
    """Unix seconds -> milliseconds as the CSV's ISO timestamps show them (rounded to microseconds first,
    as datetime.fromtimestamp does, then cut to milliseconds)."""
    t = np.where(np.isfinite(ts), ts, 0.0)
    sec = np.floor(t)
    us = np.rint((t - sec) * 1e6)
    return sec.astype(np.int64) * 1000 + us.astype(np.int64) // 1000


class TableExporter(CsvExporter):
    """The export's rows as Arrow record batches, handed to `sink` as they are made."""

    def __init__(self, sink: Callable[[Any], None], groups: tuple[str, ...], layout: str = "wide",
                 every_s: float | None = None, t_from: float | None = None, t_to: float | None = None,
                 start_unix: float | None = None, th: Thresholds = DEFAULTS) -> None:
        super().__init__(None, groups, layout, every_s, t_from, t_to, start_unix, th)  # type: ignore[arg-type]
        self.pa = _pa()
        self.sink = sink
        self.schema: Any = None
        self._meta: list | None = None

    def _header(self) -> None:
        pa = self.pa
        assert self.cols is not None
        head = [("time_s", pa.float64()), ("timestamp", pa.timestamp("ms", tz="UTC")), ("step", pa.int64())]
        if self.layout == "long":
            self.schema = pa.schema([*head, ("device", pa.int16()), ("core", pa.int16()), ("link", pa.string()),
                                     ("metric", pa.string()), ("value", pa.float64())])
        else:
            self.schema = pa.schema([*head, *((c.name, pa.int64() if c.decimals == 0 else pa.float64())
                                               for c in self.cols)])

    def _write(self, rel: np.ndarray, ts: np.ndarray, step: np.ndarray, vals: np.ndarray) -> None:
        pa = self.pa
        assert self.cols is not None
        n = len(rel)
        if not n:
            return
        self.rows += n
        t = pa.array(_scaled(rel, 3) / 1000.0, type=pa.float64())  # (as the CSV's time_s: 0.001 s)
        stamp = pa.array(_ms(ts), type=pa.int64(), mask=~np.isfinite(ts)).cast(pa.timestamp("ms", tz="UTC"))
        st = pa.array(step, type=pa.int64())
        if self.layout == "long":
            self.sink(self._long(t, stamp, st, vals))
            return
        self.sink(pa.RecordBatch.from_arrays([t, stamp, st, *self._columns(vals)], schema=self.schema))

    def _rounded(self, vals: np.ndarray) -> np.ndarray:
        """The figures as the CSV cells' values (NaN where a cell is empty): one scaling per precision."""
        dec = np.asarray(self._decimals)
        ok = np.isfinite(vals)
        out = np.full(vals.shape, np.nan)
        for d in sorted(set(self._decimals)):
            js = np.flatnonzero(dec == d)
            k = _scaled(np.where(ok[:, js], vals[:, js], 0.0), d)
            out[:, js] = np.where(ok[:, js], k if d == 0 else k / 10.0**d, np.nan)
        return out

    def _columns(self, vals: np.ndarray) -> list:
        """Every figure column as a typed Arrow array: int64 for integer columns, float64 otherwise."""
        pa = self.pa
        rounded = self._rounded(vals).T.copy()  # (columns contiguous)
        out = []
        for col, d in zip(rounded, self._decimals, strict=True):
            miss = np.isnan(col)
            if d == 0:
                out.append(pa.array(np.where(miss, 0, col).astype(np.int64), type=pa.int64(),
                                    mask=miss if miss.any() else None))
            else:
                out.append(pa.array(col, type=pa.float64(), mask=miss if miss.any() else None))
        return out

    def _long(self, t: Any, stamp: Any, st: Any, vals: np.ndarray) -> Any:
        """One row per present value, row by row, column by column (the CSV long layout's order)."""
        pa = self.pa
        assert self.cols is not None
        n, k = vals.shape
        rounded = self._rounded(vals)
        keep = ~np.isnan(rounded).ravel()
        row = np.repeat(np.arange(n), k)[keep]
        col = np.tile(np.arange(k), n)[keep]
        if self._meta is None:  # each column's device, core, link and metric, once per export
            cols = self.cols
            self._meta = [pa.array([c.device for c in cols], type=pa.int16()),
                          pa.array([c.core for c in cols], type=pa.int16()),
                          pa.array([f"nd{c.link[0]}-nd{c.link[1]}" if c.link else None for c in cols], type=pa.string()),
                          pa.array(["link_bytes_per_s" if c.link else c.metric for c in cols], type=pa.string())]
        rows, which = pa.array(row), pa.array(col)
        return pa.RecordBatch.from_arrays([
            t.take(rows), stamp.take(rows), st.take(rows), *(m.take(which) for m in self._meta),
            pa.array(rounded.ravel()[keep], type=pa.float64()),
        ], schema=self.schema)

    def finish(self) -> int:
        self._drain()
        if self._bin is not None and len(self._bin[0]):
            self._emit_bins(*self._bin, np.array([0]))
            self._bin = None
        return self.rows


class FileSink:
    """Record batches into a Parquet (zstd) or Arrow IPC file, opened at the first batch. Batches are
    gathered to ROWS rows before they are written (a Parquet row group, an IPC record batch): the
    export's batches of a few hundred rows would make a slow file of thousands of small groups."""

    ROWS = 8192

    def __init__(self, out: Any, fmt: str) -> None:
        self.out, self.fmt = out, fmt
        self.writer: Any = None
        self.pending: list = []
        self.rows = 0

    def __call__(self, batch: Any) -> None:
        self.pending.append(batch)
        self.rows += batch.num_rows
        if self.rows >= self.ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        import pyarrow as pa

        table = pa.Table.from_batches(self.pending)
        self.pending, self.rows = [], 0
        if self.writer is None:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                self.writer = pq.ParquetWriter(self.out, table.schema, compression="zstd")
            else:
                self.writer = pa.ipc.new_file(self.out, table.schema)
        if self.fmt == "parquet":
            self.writer.write_table(table, row_group_size=self.ROWS)
        else:
            self.writer.write_table(table, max_chunksize=self.ROWS)

    def close(self) -> None:
        self._flush()
        if self.writer is not None:
            self.writer.close()
