"""The Python API for notebooks: a recorded run (a profile or a neuron-monitor log) as tables.

    import neurontop
    run = neurontop.open("run.ntprof")           # or "neuron-monitor.jsonl[.gz|.zst]"
    df = run.to_polars(fields="util,hints", every="5s")
    run.hints().to_pandas()                      # the findings of `neuron-top diagnose`

Every table is what `neuron-top export --format arrow` writes for the same options (docs/api.md):
the same rows, columns, types and values. The tables are built with polars; pyarrow is needed for
`to_arrow`, `to_pandas`, `hints` and `events` (`pip install 'neuron-top[export]'`), pandas for
`to_pandas`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from .core.analysis.diagnose import diagnose
from .core.analysis.thresholds import DEFAULTS, Thresholds
from .core.export.exporter import Exporter, parse_fields
from .core.export.reading import feed, open_input
from .core.export.writers import _pa
from .core.store.profile import Profile
from .core.telemetry.logs import InputError, log_samples, sniff
from .core.telemetry.units import parse_duration, parse_time


def open(path: str, skip_bad: bool = False) -> Run:  # noqa: A001  (neurontop.open, like io.open)
    """A profile (.ntprof) or a neuron-monitor log (plain, .gz, .zst). A file that is neither, or a
    damaged one, raises neurontop.api.InputError with a message naming the file (and line)."""
    return Run(path, skip_bad)


def _seconds(v: float | str | None, parse: Any) -> float | None:
    return None if v is None else float(v) if isinstance(v, (int, float)) else parse(v)


class Run:
    """One recorded run. Nothing is read until a table is asked for; each call reads the file again."""

    def __init__(self, path: str, skip_bad: bool = False) -> None:
        self.path, self.skip_bad = path, skip_bad
        self.kind = "profile" if sniff(path) == "profile" else "log"
        self.meta: dict[str, Any] = {"kind": self.kind, "path": path}
        if self.kind == "profile":
            prof = Profile(path)  # (checks it: a bad file fails here)
            for k, v in prof.meta.items():
                try:
                    self.meta[k] = json.loads(v)
                except (TypeError, ValueError):
                    self.meta[k] = v
            self.meta["samples"] = len(prof)
            prof.close()

    def __repr__(self) -> str:
        return f"neurontop.Run({self.path!r}, {self.kind})"

    def _th(self, hint_threshold: float | None, hint_window: float | str | None) -> Thresholds:
        th = DEFAULTS
        if hint_threshold is not None:
            th = dataclasses.replace(th, util_below=float(hint_threshold))
        if hint_window is not None:
            th = dataclasses.replace(th, window_s=_seconds(hint_window, parse_duration) or th.window_s)
        return th

    def to_polars(self, fields: str | list[str] = "all", every: float | str | None = None,
                  start: float | str | None = None, end: float | str | None = None, layout: str = "wide",
                  hint_threshold: float | None = None, hint_window: float | str | None = None) -> Any:
        """The export's table (polars.DataFrame). `fields`: groups as for --fields ("util,hints", a
        list, or "all"); `every`: a bin length ("5s" or seconds); `start`/`end`: seconds from the
        first report (or "1:30", "5m"); `layout`: "wide" or "long"."""
        import polars as pl

        groups = parse_fields(fields if isinstance(fields, str) else ",".join(fields))
        if layout not in ("wide", "long"):
            raise ValueError(f"layout must be 'wide' or 'long', not {layout!r}")
        t_from, t_to = _seconds(start, parse_time), _seconds(end, parse_time)
        if t_from is not None and t_to is not None and t_to <= t_from:
            raise ValueError(f"end {t_to:g} s is not after start {t_from:g} s")
        frames: list = []
        th = self._th(hint_threshold, hint_window)
        ex = Exporter(lambda f, _cols: frames.append(f.collect()), groups, layout=layout,
                      every_s=_seconds(every, parse_duration), t_from=t_from, t_to=t_to, th=th)
        feed(open_input(self.path, self.skip_bad), ex)
        if not frames:
            raise ValueError(f"{self.path}: no reports" + (" in that range" if t_from or t_to else ""))
        return pl.concat(frames, rechunk=True)

    def to_arrow(self, *args: Any, **kw: Any) -> Any:
        """to_polars(...) as a pyarrow.Table."""
        _pa()
        return self.to_polars(*args, **kw).to_arrow()

    def to_pandas(self, *args: Any, **kw: Any) -> Any:
        """to_polars(...) as a pandas DataFrame (nullable integer columns stay integers)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Run.to_pandas needs pandas (and pyarrow): pip install pandas 'neuron-top[export]'") \
                from None

        return self.to_arrow(*args, **kw).to_pandas(types_mapper={_pa().int64(): pd.Int64Dtype()}.get)

    def _samples(self):
        if self.kind == "profile":
            return Profile(self.path).iter_samples(skip_bad=self.skip_bad)
        return log_samples(self.path, self.skip_bad)

    def hints(self, hint_threshold: float | None = None, hint_window: float | str | None = None) -> Any:
        """The findings of `neuron-top diagnose`, one row each (pyarrow.Table): segment, cause, kind,
        severity, confidence, start_s, end_s, share_of_run, title, action, evidence (JSON)."""
        pa = _pa()
        d = diagnose(self._samples(), self._th(hint_threshold, hint_window))
        rows = [{**{k: f[k] for k in ("cause", "kind", "severity", "confidence", "start_s", "end_s", "share_of_run",
                                      "title", "action")}, "segment": k, "evidence": json.dumps(f["evidence"])}
                for k, seg in enumerate(d.segments) for f in seg["findings"]]
        schema = pa.schema([("segment", pa.int32()), ("cause", pa.string()), ("kind", pa.string()),
                            ("severity", pa.string()), ("confidence", pa.float64()), ("start_s", pa.float64()),
                            ("end_s", pa.float64()), ("share_of_run", pa.float64()), ("title", pa.string()),
                            ("action", pa.string()), ("evidence", pa.string())])
        return pa.Table.from_pylist(rows, schema=schema)

    def events(self) -> Any:
        """The run's events (pyarrow.Table: time_s, kind, data as JSON): a profile's (hints shown and
        cleared, source lost or ended, scenario changes, out of memory), or a log's report events."""
        pa = _pa()
        if self.kind == "profile":
            prof = Profile(self.path)
            rows = [{"time_s": t, "kind": k, "data": json.dumps(d)} for t, k, d in prof.events()]
            prof.close()
        else:
            rows = [{"time_s": s.time_s, "kind": str(e.get("type", "event")), "data": json.dumps(e)}
                    for s in self._samples() for e in s.events]
        schema = pa.schema([("time_s", pa.float64()), ("kind", pa.string()), ("data", pa.string())])
        return pa.Table.from_pylist(rows, schema=schema)


__all__ = ["InputError", "Run", "open"]
