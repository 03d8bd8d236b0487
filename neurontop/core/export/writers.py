"""The export's frames written by libraries: CSV by polars, Parquet and Arrow IPC by pyarrow.

CSV cells keep each column's precision (a figure at 2 decimals reads `97.40`, an integer column
`982084091904`), empty where the value is missing; timestamps are ISO 8601 UTC with milliseconds.
Parquet (zstd) and Arrow keep the frame's types: time_s float64, timestamp[ms, UTC], step int64,
int64 for integer figures and float64 for the others.
"""

from __future__ import annotations

import io
import os
import re
from typing import IO, Any

import polars as pl

from .exporter import Column, Exporter

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow", ".ipc": "arrow"}
ISO_MS = "%Y-%m-%dT%H:%M:%S%.3fZ"


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ImportError("Parquet, Arrow and the Python API's pandas and Arrow tables need pyarrow: "
                          "pip install 'neuron-top[export]'") from None
    return pyarrow


_RAW = (io.BufferedWriter, io.FileIO)  # files polars writes through their descriptor (it flushes them first)


def _with_errno(exc: OSError) -> OSError:
    """polars's write error as Python's: its message ends "(os error 28)" and its errno is None."""
    m = re.search(r"\(os error (\d+)\)", str(exc))
    return OSError(int(m.group(1)), os.strerror(int(m.group(1)))) if exc.errno is None and m else exc


class CsvSink:
    """Frames to CSV text on `out` (a binary file, or a text stream such as sys.stdout or StringIO),
    the header before the first frame."""

    rounds = True  # its casts to decimals round each float column as np.round does (rint of x * 10^d)

    def __init__(self, out: IO) -> None:
        self.text = isinstance(out, io.TextIOBase)
        self.binary: IO[bytes] | None = getattr(out, "buffer", None) if self.text else out
        self.out = out
        self.direct = type(out) in _RAW  # polars writes to the file's descriptor itself, without the GIL
        self.header = True
        self._fixed: list[pl.Expr] | None = None

    def __call__(self, frame: pl.LazyFrame, cols: list[Column]) -> None:
        if self._fixed is None:  # float columns at their precision: a decimal's text keeps trailing zeros
            by_dec: dict[int, list[str]] = {3: ["time_s"]}
            schema = frame.collect_schema()
            for c in cols:
                if c.decimals > 0 and schema.get(c.name) == pl.Float64:
                    by_dec.setdefault(c.decimals, []).append(c.name)
            self._fixed = [pl.col(names).cast(pl.Decimal(38, d)) for d, names in by_dec.items()]
        df = frame.with_columns(self._fixed).collect()
        if self.direct:
            try:
                df.write_csv(self.out, include_header=self.header, datetime_format=ISO_MS)
            except OSError as exc:
                raise _with_errno(exc) from None
        else:
            buf = io.BytesIO()
            df.write_csv(buf, include_header=self.header, datetime_format=ISO_MS)
            if self.binary is not None:
                if self.text:
                    self.out.flush()
                self.binary.write(buf.getbuffer())
            else:
                self.out.write(buf.getvalue().decode())
        self.header = False

    def close(self) -> None:
        (self.binary or self.out).flush()


class FileSink:
    """Frames into a Parquet (zstd) or Arrow IPC file, opened at the first frame. Frames are gathered
    to ROWS rows before they are written (a Parquet row group, an IPC record batch): the export's
    batches of a few hundred rows would make a slow file of thousands of small groups."""

    ROWS = 8192

    def __init__(self, out: Any, fmt: str) -> None:
        self.pa = _pa()
        self.out, self.fmt = out, fmt
        self.writer: Any = None
        self.pending: list[pl.DataFrame] = []
        self.rows = 0

    def __call__(self, frame: pl.LazyFrame, cols: list[Column]) -> None:
        df = frame.collect()
        self.pending.append(df)
        self.rows += df.height
        if self.rows >= self.ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        pa = self.pa
        table = pl.concat(self.pending).to_arrow()
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


def csv_exporter(out: IO, groups: tuple[str, ...], **kw: Any) -> Exporter:
    """An exporter writing CSV to `out` (tests, the Python API's callers): Exporter(CsvSink(out), ...)."""
    return Exporter(CsvSink(out), groups, **kw)

