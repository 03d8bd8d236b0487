"""How figures are written for people: counts, clock times, one piece of evidence."""

from __future__ import annotations

import re

COUNT_UNITS = ("cores", "vCPUs", "reports", "")  # counts: the name says what is counted


def plural(n: float, word: str) -> str:
    """'1 core', '2 cores', '1 vCPU' ('word' is the singular)."""
    return f"{n:g} {word}" if n == 1 else f"{n:g} {word}s"


def core_name(core: int, cores_per_device: int) -> str:
    """One core's name everywhere (grid, tree, hints, diagnose): its device and its place on it, then
    the global index neuron-monitor keys it by: "ND1/NC1 [3]"."""
    d, c = divmod(core, max(1, cores_per_device))
    return f"ND{d}/NC{c} [{core}]"


def clock(seconds: float) -> str:
    """hh:mm:ss of a time from the start of a stream."""
    seconds = max(0.0, seconds)
    h, rem = divmod(int(round(seconds)), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def format_evidence(name: str, value: float, unit: str) -> str:
    """One piece of evidence as the hints pane and `diagnose` both print it (the pane's precision)."""
    if unit == "%":
        return f"{name} {value:.1f} %"
    if unit == "GB/s":
        return f"{name} {value:.1f} GB/s"
    if unit in ("GiB", "TFLOP/s", "s"):
        return f"{name} {value:.2f} {unit}"
    if unit in COUNT_UNITS:  # a whole count as it is, a share of cores (1.96) to two places
        return f"{name} {value:.0f}" if float(value).is_integer() else f"{name} {value:.2f}"
    return f"{name} {value:g} {unit}"


_UNITS = {"": 1.0, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'1s', '500ms', '10m', '2h', '90' (seconds)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (examples: 1s, 500ms, 10m)")
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def parse_time(text: str) -> float:
    """Seconds from the start: '90', '1:30', '01:02:03', or a duration such as '5m'."""
    if ":" in text:
        secs = 0.0
        try:
            for p in text.split(":"):
                secs = secs * 60 + float(p)
        except ValueError:
            raise ValueError(f"not a time: {text!r}") from None
        return secs
    return parse_duration(text)
