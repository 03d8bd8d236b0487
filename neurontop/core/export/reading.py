"""What an export reads: a profile (its columns, batch by batch) or a neuron-monitor log (report by
report), fed to an exporter. The command line and the Python API share it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..store.colread import iter_profile
from ..store.profile import Profile
from ..telemetry.batch import Batch
from ..telemetry.logs import log_duration, log_samples, sniff
from ..telemetry.sample import Sample
from .exporter import Exporter


@dataclass
class ExportInput:
    path: str
    batches: Iterator[Batch] | None  # a profile's
    samples: Iterator[Sample] | None  # a log's
    start_unix: float | None  # the first report's unix time, when the source knows it


def _warn_chunk(msg: str) -> None:
    print(f"neuron-top: skipped: {msg}", file=sys.stderr)


def open_input(path: str, skip_bad: bool = False, on_skip: Callable[[int, str], None] | None = None) -> ExportInput:
    """Open the source (a bad profile fails here, before any output)."""
    if path != "-" and sniff(path) == "profile":
        prof = Profile(path)
        meta_start = prof.meta.get("start_unix")
        return ExportInput(path, iter_profile(prof, skip_bad, on_skip=_warn_chunk), None,
                           float(meta_start) if meta_start else None)
    return ExportInput(path, None, log_samples(path, skip_bad, on_skip), None)


def log_start_estimate(path: str) -> float | None:
    """A neuron-monitor log has no clock: take its last write as the end of the last report."""
    last = log_duration(path)
    return None if last is None else os.path.getmtime(path) - last


def feed(inp: ExportInput, ex: Exporter, progress: Callable[[int], None] | None = None) -> int:
    """Every row of the input into the exporter; the rows it wrote."""
    if ex.start_unix is None:
        ex.start_unix = inp.start_unix
    try:
        done = 0
        if inp.batches is not None:
            for b in inp.batches:
                ex.add_batch(b)
                done += len(b)
                if progress:
                    progress(done)
        else:
            assert inp.samples is not None
            for k, s in enumerate(inp.samples):
                if k == 0 and s.timestamp is None and inp.path != "-" and ex.start_unix is None:
                    ex.start_unix = log_start_estimate(inp.path)
                ex.add(s)
                if progress and k % 500 == 0:
                    progress(k)
        return ex.finish()
    except BaseException:
        ex.close(raise_error=False)  # (the writer thread ends; the error raised is the first one)
        raise
