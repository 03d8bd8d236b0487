"""The one ingest loop: source -> decoder -> history, hints, recorder, events.

The live view, `record` and replay all go through a Session. Reading and decoding (`decode`, with
the raw line written to the recorder) may run on a reader thread; `ingest` (history, hints, hint
events) runs where the consumer reads the history, the UI thread in the app. `run` does both on one
thread, for `record`. Every event a session writes carries the time of the sample it belongs to:
hint changes the sample that caused them, a lost or ended source the last sample before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from .analysis.hints import Hint, HintMonitor
from .analysis.history import History
from .analysis.thresholds import DEFAULTS, Thresholds
from .telemetry.sample import DecodeError, Decoder, Sample
from .telemetry.sources import Line, Status

STOPPED = ("lost", "ended", "error")  # source states the recorder keeps as events


class Recorder(Protocol):
    def append(self, line: bytes, sample: Sample) -> None: ...
    def event(self, time_s: float, kind: str, data: dict) -> None: ...


class Session:
    def __init__(self, th: Thresholds = DEFAULTS, recorder: Recorder | None = None,
                 history: History | None = None) -> None:
        self.decoder = Decoder()
        self.hints = HintMonitor(th)
        self.history = history if history is not None else History()
        self.recorder = recorder
        self.latest: Sample | None = None  # the last sample ingested
        self.t0: float | None = None  # stream time of the current stream's first sample
        self.last_time: float | None = None  # stream time of the last sample decoded
        self.connected = False
        self.decoded = 0
        self.bad = 0
        self.record_error: Exception | None = None  # why the recorder stopped (decode clears the recorder)

    @property
    def shown(self) -> list[Hint]:
        return self.hints.shown

    # -- the reading side -------------------------------------------------------------------------
    def status(self, st: Status) -> Status:
        """A source's status: a new connection starts a new stream (counters from scratch); a lost,
        ended or failed source is an event of the recording at the last sample's time."""
        if st.state == "connected":
            self.decoder = Decoder()
            self.connected = True
        elif st.state in STOPPED and self.recorder is not None:
            t = self.last_time if self.last_time is not None else self.decoder.clock
            self.recorder.event(t, st.state, {"detail": st.detail})
        return st

    def decode(self, data: bytes) -> Sample:
        """One report line as a Sample, written to the recorder. Raises DecodeError; a recorder that fails
        is dropped, its error kept in `record_error` for the caller to report."""
        try:
            s = self.decoder.decode(data)
        except DecodeError:
            self.bad += 1
            raise
        self.decoded += 1
        self.last_time = s.time_s
        if self.recorder is not None:
            try:
                self.recorder.append(data, s)
            except Exception as exc:  # disk full, file removed: the recording stops, the stream goes on
                self.recorder = None
                self.record_error = exc
        return s

    # -- the consuming side -----------------------------------------------------------------------
    def ingest(self, s: Sample) -> list[dict]:
        """Add a sample to the history and the hints; the hint events (also written to the recorder)."""
        if self.latest is not None and (s.n_cores != self.latest.n_cores or s.time_s < self.latest.time_s):
            self.history.clear()  # a new stream (the hint monitor sees the restart itself)
            self.t0 = None
        if self.t0 is None:
            self.t0 = s.time_s
        self.history.add(s)
        events = self.hints.feed_sample(s)
        if self.recorder is not None:
            for ev in events:
                self.recorder.event(s.time_s, "hint", ev)
        self.latest = s
        return events

    def reset(self) -> None:
        """Forget the history and the hints (replay, after a seek)."""
        self.history.clear()
        self.hints.reset()
        self.latest = None
        self.t0 = None

    # -- both, on one thread ----------------------------------------------------------------------
    def run(self, events: Iterator[Line | Status], on_bad: Callable[[DecodeError], None] | None = None,
            ) -> Iterator[Sample | Status]:
        """Drive a source's events through the session; yield each sample and status."""
        for ev in events:
            if isinstance(ev, Status):
                yield self.status(ev)
                continue
            try:
                s = self.decode(ev.data)
            except DecodeError as exc:
                if on_bad is not None:
                    on_bad(exc)
                continue
            self.ingest(s)
            yield s
