"""The one ingest loop: events carry the time of the sample they belong to."""

from __future__ import annotations

from neurontop.core.session import Session
from neurontop.core.telemetry.sources import Line, Status

from .conftest import make_reports


class _Rec:
    def __init__(self, fail_after: int | None = None) -> None:
        self.lines: list[float] = []
        self.events: list[tuple[float, str, dict]] = []
        self.fail_after = fail_after

    def append(self, line: bytes, sample) -> None:
        if self.fail_after is not None and len(self.lines) >= self.fail_after:
            raise OSError(28, "No space left on device")
        self.lines.append(sample.time_s)

    def event(self, time_s: float, kind: str, data: dict) -> None:
        self.events.append((time_s, kind, data))


def test_a_session_records_samples_hints_and_the_end_at_their_samples_times() -> None:
    lines = make_reports("trn1.32xlarge", "straggler", 20)
    rec = _Rec()
    session = Session(recorder=rec)
    evs = [Status("connected"), *(Line(x) for x in lines[:10]), Line(b"{not json"), *(Line(x) for x in lines[10:]),
           Status("ended", "end of input")]
    out = list(session.run(iter(evs), on_bad=lambda exc: None))
    samples = [x for x in out if not isinstance(x, Status)]
    assert len(samples) == 20 and session.bad == 1 and session.connected
    assert rec.lines == [s.time_s for s in samples]
    starts = [(t, d["cause"]) for t, k, d in rec.events if k == "hint" and d["event"] == "start"]
    assert starts and starts[0][1] == "straggler"
    assert starts[0][0] in rec.lines  # a hint event carries its sample's time
    assert rec.events[-1] == (samples[-1].time_s, "ended", {"detail": "end of input"})
    assert session.history.rings["time_s"].values()[-1] == samples[-1].time_s


def test_a_failing_recorder_is_dropped_and_the_stream_goes_on() -> None:
    lines = make_reports("trn1.2xlarge", "healthy", 6)
    rec = _Rec(fail_after=3)
    session = Session(recorder=rec)
    out = list(session.run(iter([Line(x) for x in lines])))
    assert len(out) == 6 and len(rec.lines) == 3
    assert session.recorder is None and isinstance(session.record_error, OSError)


def test_a_new_connection_restarts_the_counters() -> None:
    lines = make_reports("trn1.32xlarge", "healthy", 5)
    session = Session()
    first = [x for x in session.run(iter([Status("connected"), *(Line(x) for x in lines)]))
             if not isinstance(x, Status)]
    again = [x for x in session.run(iter([Status("connected"), Line(lines[0])])) if not isinstance(x, Status)]
    # the first report of a stream has no previous counters: the same figures as the very first time
    assert (again[0].util == first[0].util).all()
    assert len(session.history.rings["time_s"]) == 1  # time went back: the history starts again
