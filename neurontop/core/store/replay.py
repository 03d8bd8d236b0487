"""Replay clock: which recorded sample to show at each moment, at a speed, with seeking.

Headless. Time is the recording's own clock (time_s of each sample), advanced by the wall-clock
time the UI hands in times the speed; tests drive it with fixed steps, never the wall clock.
"""

from __future__ import annotations

import bisect
import re
from typing import Protocol

from ..telemetry.sample import Sample

SPEEDS = [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 4, 8, 16, 32, 64]


class Timeline(Protocol):
    times: list[float]

    def __len__(self) -> int: ...

    def sample(self, index: int) -> Sample: ...


class ReplayClock:
    def __init__(self, timeline: Timeline, speed: float = 1.0, start_s: float | None = None) -> None:
        if len(timeline) == 0:
            raise ValueError("the recording holds no samples")
        self.tl = timeline
        self.times = timeline.times
        self.speed = speed
        self.paused = False
        self.t0 = self.times[0]
        self.index = 0
        self.clock = self.t0
        if start_s is not None:
            self.seek(self.t0 + start_s)

    @property
    def duration(self) -> float:
        return self.times[-1] - self.t0

    @property
    def position(self) -> float:
        return self.times[self.index] - self.t0

    @property
    def at_end(self) -> bool:
        return self.index >= len(self.times) - 1

    def index_at(self, t: float) -> int:
        """The last sample at or before time t (the first if t is before the start)."""
        return max(0, bisect.bisect_right(self.times, t + 1e-9) - 1)

    def seek(self, t: float) -> int:
        t = min(max(t, self.t0), self.times[-1])
        self.index = self.index_at(t)
        self.clock = t
        return self.index

    def seek_relative(self, seconds: float) -> int:
        return self.seek(self.times[self.index] + seconds)

    def step(self, n: int) -> int:
        self.index = min(len(self.times) - 1, max(0, self.index + n))
        self.clock = self.times[self.index]
        return self.index

    def home(self) -> int:
        return self.seek(self.t0)

    def end(self) -> int:
        return self.seek(self.times[-1])

    def faster(self) -> float:
        i = bisect.bisect_right(SPEEDS, self.speed)
        self.speed = SPEEDS[min(i, len(SPEEDS) - 1)]
        return self.speed

    def slower(self) -> float:
        i = bisect.bisect_left(SPEEDS, self.speed) - 1
        self.speed = SPEEDS[max(i, 0)]
        return self.speed

    def advance(self, wall_dt: float) -> list[int]:
        """Move the clock by wall_dt x speed; return the indices passed, in order."""
        if self.paused or self.at_end:
            return []
        self.clock = min(self.clock + wall_dt * self.speed, self.times[-1])
        new = self.index_at(self.clock)
        passed = list(range(self.index + 1, new + 1))
        self.index = new
        return passed


_PART = re.compile(r"(\d+(?:\.\d+)?)([hms]?)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def _seconds(body: str, text: str) -> float:
    if ":" in body:
        secs = 0.0
        for p in body.split(":"):
            if not re.fullmatch(r"\d+(?:\.\d+)?", p):
                raise ValueError(f"not a time: {text!r}")
            secs = secs * 60 + float(p)
        return secs
    parts = _PART.findall(body)
    if not parts or "".join(n + u for n, u in parts) != body or any(not u for _, u in parts[:-1]):
        raise ValueError(f"not a time: {text!r} (try 90, 1:30, 1m30s, +10s, -2m)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_jump(text: str, position: float) -> float:
    """below-style time: '90', '1:30', '01:02:03', '1m30s' absolute; '+10s', '-2m', '+1m30s' relative. Seconds."""
    t = text.strip().replace(" ", "")
    if not t:
        raise ValueError("empty time")
    if t[0] in "+-":
        return position + (1 if t[0] == "+" else -1) * _seconds(t[1:], text)
    return _seconds(t, text)
